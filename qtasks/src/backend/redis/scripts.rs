//! The Lua scripts of the Redis backend, one atomic script per operation so
//! each costs one round trip. The code lives in `lua/*.lua`, each file
//! starting with its KEYS, ARGV and reply; here each becomes a [`Script`]
//! (which runs by `EVALSHA`, loading the script on `NOSCRIPT`), and
//! [`ALL`] lists the sources `connect` loads up front.

use redis::Script;
use std::sync::LazyLock;

/// One script: its source from a file in `lua/` and the `Script` over it.
macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)*) => {
        $(
            $(#[$doc])*
            pub(super) static $name: LazyLock<Script> =
                LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file, ".lua"))));
        )*

        /// The source of every script, loaded by `connect` in one round trip
        /// so the first calls need not retry after `NOSCRIPT`.
        pub(super) const ALL: &[&str] = &[$(include_str!(concat!("lua/", $file, ".lua"))),*];
    };
}

scripts! {
    /// Stores a new record and queues it, or delays it (`lua/enqueue.lua`).
    ENQUEUE = "enqueue";
    /// Promotes due delayed tasks, requeues expired leases, takes tasks (`lua/fetch.lua`).
    FETCH = "fetch";
    /// Writes a non-final status and renews the lease (`lua/update.lua`).
    UPDATE = "update";
    /// Writes a final (or `retry`) record, releases, counts and publishes it (`lua/finish.lua`).
    FINISH = "finish";
    /// Cancels a queued task, or stores and publishes a request for a running one (`lua/cancel.lua`).
    CANCEL = "cancel";
    /// Files undecodable taken tasks as dead letters (`lua/bury.lua`).
    BURY = "bury";
    /// Puts taken tasks back at their place in the queue (`lua/release.lua`).
    RELEASE = "release";
    /// Renews leases and reads stored cancel requests (`lua/extend.lua`).
    EXTEND = "extend";
}
