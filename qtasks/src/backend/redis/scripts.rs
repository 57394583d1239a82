//! The Lua scripts of the Redis backend, one atomic script per operation so
//! each costs one round trip. The code lives in `lua/*.lua`, each file
//! starting with its KEYS, ARGV and reply, behind the helpers they share
//! (`lua/common.lua`, put in front of each: a script cannot call another);
//! here each becomes a [`Script`] (which runs by `EVALSHA`, loading the
//! script on `NOSCRIPT`), and [`ALL`] lists the sources `connect` loads up
//! front.

use redis::Script;
use std::sync::LazyLock;

/// The source of the script in `lua/{file}.lua`, behind `lua/common.lua`.
macro_rules! source {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!(concat!("lua/", $file, ".lua")))
    };
}

/// One script: its source from a file in `lua/` and the `Script` over it.
macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)*) => {
        $(
            $(#[$doc])*
            pub(super) static $name: LazyLock<Script> =
                LazyLock::new(|| Script::new(source!($file)));
        )*

        /// The source of every script, loaded by `connect` in one round trip
        /// so the first calls need not retry after `NOSCRIPT`.
        pub(super) const ALL: &[&str] = &[$(source!($file)),*];
    };
}

scripts! {
    /// Stores new records and queues them, or delays them, unless their id or
    /// unique key is taken (`lua/enqueue.lua`).
    ENQUEUE = "enqueue";
    /// Promotes due delayed tasks, takes back expired leases and the tasks of
    /// dead holders, takes tasks (`lua/fetch.lua`).
    FETCH = "fetch";
    /// Writes a non-final status of the run holding the task and renews its lease (`lua/update.lua`).
    UPDATE = "update";
    /// Writes the final (or `retry`) records of a batch of tasks, releases, counts and publishes them, each fenced by its run (`lua/finish.lua`).
    FINISH = "finish";
    /// Cancels a queued task, or stores and publishes a request for a running one (`lua/cancel.lua`).
    CANCEL = "cancel";
    /// Files taken tasks whose record cannot run as dead letters and ends them `error` (`lua/bury.lua`).
    BURY = "bury";
    /// Puts taken tasks back at their place in the queue, `new` again (`lua/release.lua`).
    RELEASE = "release";
    /// Renews the leases a run still holds and reads stored cancel requests (`lua/extend.lua`).
    EXTEND = "extend";
    /// Marks a holder alive (`lua/heartbeat.lua`).
    HEARTBEAT = "heartbeat";
    /// Reads depth, delayed, in flight, paused and the oldest task of queues (`lua/queues.lua`).
    QUEUES = "queues";
    /// Reads the live settings of a group through its index, dropping the names gone (`lua/configs.lua`).
    CONFIGS = "configs";
}
