//! Dispatch benchmarks for qtasks plugin chains.
//!
//! Every scenario fires one trigger `n` times in an awaited loop, driven by a
//! noop-waker poll loop ([`block_on`]) so no scheduler runs. Each measured
//! loop lives in its own `#[inline(never)]` function `scenario_<name>`, so
//! callgrind can count only it (`--toggle-collect='*scenario_<name>*'`).
//! The `dispatch` binary and the criterion bench both call them through
//! [`Bench::run`].
//!
//! Firing goes through exactly what the runtime does (the `fire!` macro of
//! `qtasks::fire!`): nothing if no plugin listens, plain calls if every
//! listener is sync, one awaited future otherwise.

use qtasks::dispatch::{Append, Member, fire};
use qtasks::triggers::Trigger;
use qtasks::triggers::{
    BrokerFlushAll, BrokerListenStart, BrokerStart, BrokerStop, QtasksFlushAll, QtasksPing, QtasksStop,
    TaskExecutorArgsReplace, WorkerStart, WorkerStop,
};
use qtasks::{NewTask, Plugin, PluginChain, TaskInfo, TaskMessage, TaskRecord, Uuid, Value, plugin};
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};

/// Every scenario, in the order the reports list them.
pub const SCENARIOS: &[&str] = &[
    "none",
    "silent8",
    "nogate_silent8",
    "default8",
    "one_of_8",
    "direct_one",
    "sync8",
    "solo_sync8",
    "direct_sync8",
    "async8",
    "direct_async8",
    "dyn_silent8",
    "dyn8",
    "replace_none",
    "replace_silent8",
    "replace_sync8",
    "direct_replace_sync8",
];

/// Polls `fut` with a noop waker until it is ready. Every future here is
/// ready on its first poll, so this is one call.
#[inline(always)]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

// ---------------------------------------------------------------------------
// Handlers: the same tiny work everywhere (a relaxed load + store, no lock).

/// One counter per handler, so no handler's work can be merged with another's.
pub static COUNTERS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

#[inline(always)]
fn bump(i: usize, by: usize) {
    let c = &COUNTERS[i];
    c.store(c.load(Relaxed).wrapping_add(by as u64), Relaxed);
}

macro_rules! observers {
    ($($i:literal $sync:ident $async_:ident;)*) => {$(
        /// A sync `worker_start` handler.
        #[plugin(on = "worker_start")]
        pub fn $sync(ctx: &WorkerStart<'_>) {
            bump($i, ctx.max_tasks_process)
        }

        /// An async `worker_start` handler doing the same work.
        #[plugin(on = "worker_start")]
        pub async fn $async_(ctx: &WorkerStart<'_>) {
            bump($i, ctx.max_tasks_process)
        }
    )*};
}

observers! {
    0 sync_0 async_0;
    1 sync_1 async_1;
    2 sync_2 async_2;
    3 sync_3 async_3;
    4 sync_4 async_4;
    5 sync_5 async_5;
    6 sync_6 async_6;
    7 sync_7 async_7;
}

macro_rules! solo {
    ($($i:literal $name:ident;)*) => {$(
        /// A sync `worker_start` handler used by one chain only (`solo_sync8`).
        #[plugin(on = "worker_start")]
        pub fn $name(ctx: &WorkerStart<'_>) {
            bump($i, ctx.max_tasks_process)
        }
    )*};
}

solo! {
    0 solo_0;
    1 solo_1;
    2 solo_2;
    3 solo_3;
    4 solo_4;
    5 solo_5;
    6 solo_6;
    7 solo_7;
}

// The `async` keyword is written in the macro, not passed in: `#[plugin]`
// quotes the call of the handler with the span of its signature's first
// token, so an `async` token from the invocation site would make `ctx`
// unresolvable (macro hygiene).
macro_rules! silent {
    ($($i:literal $name:ident $trigger:literal $Ctx:ident $mode:ident;)*) => {$(
        silent!(@one $mode $i $name $trigger $Ctx);
    )*};
    (@one sync $i:literal $name:ident $trigger:literal $Ctx:ident) => {
        /// A sync handler of some other trigger than `worker_start`.
        #[plugin(on = $trigger)]
        pub fn $name(ctx: &$Ctx<'_>) {
            bump($i, ctx.app.len())
        }
    };
    (@one async $i:literal $name:ident $trigger:literal $Ctx:ident) => {
        /// An async handler of some other trigger than `worker_start`.
        #[plugin(on = $trigger)]
        pub async fn $name(ctx: &$Ctx<'_>) {
            bump($i, ctx.app.len())
        }
    };
}

silent! {
    0 silent_0 "worker_stop" WorkerStop sync;
    1 silent_1 "broker_start" BrokerStart sync;
    2 silent_2 "broker_stop" BrokerStop sync;
    3 silent_3 "qtasks_stop" QtasksStop sync;
    4 silent_4 "qtasks_ping" QtasksPing async;
    5 silent_5 "qtasks_flush_all" QtasksFlushAll async;
    6 silent_6 "broker_listen_start" BrokerListenStart async;
    7 silent_7 "broker_flush_all" BrokerFlushAll async;
}

macro_rules! replacers {
    ($($i:literal $name:ident;)*) => {$(
        /// A sync `task_executor_args_replace` handler: flips a boolean argument.
        #[plugin(on = "task_executor_args_replace")]
        pub fn $name(ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
            bump($i, 1);
            Some(Value::Bool(!matches!(ctx.args, Value::Bool(true))))
        }
    )*};
}

replacers! {
    0 replace_0;
    1 replace_1;
    2 replace_2;
    3 replace_3;
    4 replace_4;
    5 replace_5;
    6 replace_6;
    7 replace_7;
}

macro_rules! hand_written {
    ($($P:ident)*) => {$(
        /// A hand-written plugin that overrides nothing and keeps the default
        /// `LISTENS` (every trigger), so chains call its no-op defaults.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $P;
        impl Plugin for $P {
            type Tasks = ();
        }
    )*};
}

hand_written!(Default0 Default1 Default2 Default3 Default4 Default5 Default6 Default7);

// ---------------------------------------------------------------------------
// Chains, built the way the app builder builds them.

/// 8 plugins, none listening to `worker_start` nor `task_executor_args_replace`.
pub fn silent8() -> impl PluginChain {
    ().append(Member::new(Silent0))
        .append(Member::new(Silent1))
        .append(Member::new(Silent2))
        .append(Member::new(Silent3))
        .append(Member::new(Silent4))
        .append(Member::new(Silent5))
        .append(Member::new(Silent6))
        .append(Member::new(Silent7))
}

/// 8 hand-written plugins with the default `LISTENS` and no override.
pub fn default8() -> impl PluginChain {
    ().append(Member::new(Default0))
        .append(Member::new(Default1))
        .append(Member::new(Default2))
        .append(Member::new(Default3))
        .append(Member::new(Default4))
        .append(Member::new(Default5))
        .append(Member::new(Default6))
        .append(Member::new(Default7))
}

/// 8 plugins; the 4th one listens to `worker_start` (sync).
pub fn one_of_8() -> impl PluginChain {
    ().append(Member::new(Silent0))
        .append(Member::new(Silent1))
        .append(Member::new(Silent2))
        .append(Member::new(Sync0))
        .append(Member::new(Silent4))
        .append(Member::new(Silent5))
        .append(Member::new(Silent6))
        .append(Member::new(Silent7))
}

/// 8 sync `worker_start` listeners.
pub fn sync8() -> impl PluginChain {
    ().append(Member::new(Sync0))
        .append(Member::new(Sync1))
        .append(Member::new(Sync2))
        .append(Member::new(Sync3))
        .append(Member::new(Sync4))
        .append(Member::new(Sync5))
        .append(Member::new(Sync6))
        .append(Member::new(Sync7))
}

/// 8 sync `worker_start` listeners whose plugins are in no other chain.
pub fn solo_sync8() -> impl PluginChain {
    ().append(Member::new(Solo0))
        .append(Member::new(Solo1))
        .append(Member::new(Solo2))
        .append(Member::new(Solo3))
        .append(Member::new(Solo4))
        .append(Member::new(Solo5))
        .append(Member::new(Solo6))
        .append(Member::new(Solo7))
}

/// 8 async `worker_start` listeners.
pub fn async8() -> impl PluginChain {
    ().append(Member::new(Async0))
        .append(Member::new(Async1))
        .append(Member::new(Async2))
        .append(Member::new(Async3))
        .append(Member::new(Async4))
        .append(Member::new(Async5))
        .append(Member::new(Async6))
        .append(Member::new(Async7))
}

/// 8 sync `task_executor_args_replace` listeners.
pub fn replace8() -> impl PluginChain {
    ().append(Member::new(Replace0))
        .append(Member::new(Replace1))
        .append(Member::new(Replace2))
        .append(Member::new(Replace3))
        .append(Member::new(Replace4))
        .append(Member::new(Replace5))
        .append(Member::new(Replace6))
        .append(Member::new(Replace7))
}

// ---------------------------------------------------------------------------
// The `dyn` baseline: a string-keyed registry of boxed hooks, as in QTasks.

/// A boxed handler future.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
/// A boxed `worker_start` hook.
pub type Hook = Box<dyn for<'a, 'b> Fn(&'a WorkerStart<'b>) -> BoxFuture<'a> + Send + Sync>;

/// Hooks by trigger name, called in registration order.
#[derive(Default)]
pub struct Registry {
    hooks: HashMap<&'static str, Vec<Hook>>,
}

impl Registry {
    /// Adds a hook for the trigger `name`.
    pub fn on<F>(&mut self, name: &'static str, hook: F)
    where
        F: for<'a, 'b> Fn(&'a WorkerStart<'b>) -> BoxFuture<'a> + Send + Sync + 'static,
    {
        self.hooks.entry(name).or_default().push(Box::new(hook));
    }

    /// Calls every hook of `name` in order, awaiting each.
    pub async fn fire(&self, name: &str, ctx: &WorkerStart<'_>) {
        if let Some(hooks) = self.hooks.get(name) {
            for hook in hooks {
                hook(ctx).await;
            }
        }
    }

    /// The 8 async handlers, registered under `worker_start`.
    pub fn listening8() -> Self {
        let mut r = Self::default();
        r.on("worker_start", |c| Box::pin(async_0(c)));
        r.on("worker_start", |c| Box::pin(async_1(c)));
        r.on("worker_start", |c| Box::pin(async_2(c)));
        r.on("worker_start", |c| Box::pin(async_3(c)));
        r.on("worker_start", |c| Box::pin(async_4(c)));
        r.on("worker_start", |c| Box::pin(async_5(c)));
        r.on("worker_start", |c| Box::pin(async_6(c)));
        r.on("worker_start", |c| Box::pin(async_7(c)));
        r
    }

    /// 8 hooks registered under other triggers than `worker_start` (the
    /// silent8 triggers), so firing `worker_start` is an empty lookup.
    pub fn silent8() -> Self {
        let mut r = Self::default();
        for name in [
            "worker_stop",
            "broker_start",
            "broker_stop",
            "qtasks_stop",
            "qtasks_ping",
            "qtasks_flush_all",
            "broker_listen_start",
            "broker_flush_all",
        ] {
            r.on(name, |c| Box::pin(async_0(c)));
        }
        r
    }
}

// ---------------------------------------------------------------------------
// The measured loops.

#[inline(always)]
fn worker_start() -> WorkerStart<'static> {
    black_box(WorkerStart { app: "a", max_tasks_process: 1 })
}

/// Fires `worker_start` on `chain` exactly as the runtime does.
#[inline(always)]
async fn observe_loop<C: PluginChain>(chain: &C, n: u64) {
    for _ in 0..n {
        let mut ctx = worker_start();
        qtasks::fire!(chain, &mut ctx);
        black_box(&mut ctx);
    }
}

/// No chain at all: the baseline.
#[inline(never)]
pub fn scenario_none(n: u64) {
    black_box("none"); // keeps identical scenarios from being merged
    block_on(observe_loop(&(), n))
}

/// 8 plugins, none listening.
#[inline(never)]
pub fn scenario_silent8(n: u64) {
    black_box("silent8");
    block_on(observe_loop(&silent8(), n))
}

/// 8 silent plugins, fired without the runtime's `listens` gate.
#[inline(never)]
pub fn scenario_nogate_silent8(n: u64) {
    black_box("nogate_silent8");
    let chain = silent8();
    block_on(async {
        for _ in 0..n {
            let mut ctx = worker_start();
            fire(&chain, &mut ctx).await;
            black_box(&mut ctx);
        }
    })
}

/// 8 hand-written plugins that override nothing but listen to everything.
#[inline(never)]
pub fn scenario_default8(n: u64) {
    black_box("default8");
    block_on(observe_loop(&default8(), n))
}

/// 8 plugins, one listening (sync).
#[inline(never)]
pub fn scenario_one_of_8(n: u64) {
    black_box("one_of_8");
    block_on(observe_loop(&one_of_8(), n))
}

/// The listener of `one_of_8`, called by hand.
#[inline(never)]
pub fn scenario_direct_one(n: u64) {
    black_box("direct_one");
    block_on(async {
        for _ in 0..n {
            let mut ctx = worker_start();
            sync_0(&ctx);
            black_box(&mut ctx);
        }
    })
}

/// 8 sync listeners.
#[inline(never)]
pub fn scenario_sync8(n: u64) {
    black_box("sync8");
    block_on(observe_loop(&sync8(), n))
}

/// 8 sync listeners that no other chain shares (`sync8` shares `Sync0`
/// with `one_of_8`).
#[inline(never)]
pub fn scenario_solo_sync8(n: u64) {
    black_box("solo_sync8");
    block_on(observe_loop(&solo_sync8(), n))
}

/// The 8 sync handlers, called by hand in order.
#[inline(never)]
pub fn scenario_direct_sync8(n: u64) {
    black_box("direct_sync8");
    block_on(async {
        for _ in 0..n {
            let mut ctx = worker_start();
            sync_0(&ctx);
            sync_1(&ctx);
            sync_2(&ctx);
            sync_3(&ctx);
            sync_4(&ctx);
            sync_5(&ctx);
            sync_6(&ctx);
            sync_7(&ctx);
            black_box(&mut ctx);
        }
    })
}

/// 8 async listeners.
#[inline(never)]
pub fn scenario_async8(n: u64) {
    black_box("async8");
    block_on(observe_loop(&async8(), n))
}

/// The 8 async handlers, awaited by hand in order.
#[inline(never)]
pub fn scenario_direct_async8(n: u64) {
    black_box("direct_async8");
    block_on(async {
        for _ in 0..n {
            let mut ctx = worker_start();
            async_0(&ctx).await;
            async_1(&ctx).await;
            async_2(&ctx).await;
            async_3(&ctx).await;
            async_4(&ctx).await;
            async_5(&ctx).await;
            async_6(&ctx).await;
            async_7(&ctx).await;
            black_box(&mut ctx);
        }
    })
}

/// A string-keyed `dyn` registry with 8 hooks on other triggers.
#[inline(never)]
pub fn scenario_dyn_silent8(registry: &Registry, n: u64) {
    black_box("dyn_silent8");
    dyn_loop(registry, n)
}

/// A string-keyed `dyn` registry calling the 8 async handlers.
#[inline(never)]
pub fn scenario_dyn8(registry: &Registry, n: u64) {
    black_box("dyn8");
    dyn_loop(registry, n)
}

#[inline(always)]
fn dyn_loop(registry: &Registry, n: u64) {
    let name = <WorkerStart<'static> as Trigger>::NAME;
    block_on(async {
        for _ in 0..n {
            let mut ctx = worker_start();
            registry.fire(black_box(name), &ctx).await;
            black_box(&mut ctx);
        }
    })
}

/// What `task_executor_args_replace` borrows.
pub struct ReplaceInput {
    task: TaskInfo,
    message: TaskMessage,
}

impl Default for ReplaceInput {
    fn default() -> Self {
        let task = TaskInfo { params: &["a", "b"], ..TaskInfo::new("add") };
        let message = TaskRecord::new(Uuid::nil(), NewTask::new("add", Value::Null)).message();
        Self { task, message }
    }
}

impl ReplaceInput {
    #[inline(always)]
    fn ctx(&self) -> TaskExecutorArgsReplace<'_> {
        black_box(TaskExecutorArgsReplace { app: "a", task: &self.task, message: &self.message, args: Value::Null })
    }
}

#[inline(always)]
async fn replace_loop<C: PluginChain>(chain: &C, input: &ReplaceInput, n: u64) {
    for _ in 0..n {
        let mut ctx = input.ctx();
        qtasks::fire!(chain, &mut ctx);
        black_box(&mut ctx);
    }
}

/// `task_executor_args_replace` with no chain.
#[inline(never)]
pub fn scenario_replace_none(input: &ReplaceInput, n: u64) {
    black_box("replace_none");
    block_on(replace_loop(&(), input, n))
}

/// `task_executor_args_replace` on 8 plugins, none listening.
#[inline(never)]
pub fn scenario_replace_silent8(input: &ReplaceInput, n: u64) {
    black_box("replace_silent8");
    block_on(replace_loop(&silent8(), input, n))
}

/// `task_executor_args_replace` on 8 sync replacers.
#[inline(never)]
pub fn scenario_replace_sync8(input: &ReplaceInput, n: u64) {
    black_box("replace_sync8");
    block_on(replace_loop(&replace8(), input, n))
}

/// The 8 replacers called by hand, each seeing the previous one's value.
#[inline(never)]
pub fn scenario_direct_replace_sync8(input: &ReplaceInput, n: u64) {
    black_box("direct_replace_sync8");
    block_on(async {
        for _ in 0..n {
            let mut ctx = input.ctx();
            for replace in [replace_0, replace_1, replace_2, replace_3, replace_4, replace_5, replace_6, replace_7] {
                if let Some(v) = replace(&ctx) {
                    ctx.args = v;
                }
            }
            black_box(&mut ctx);
        }
    })
}

/// Sizes in bytes of the futures involved, per chain: the future `fire`
/// returns, and the loop future that awaits it behind the `listens` gate.
/// The gate is folded by LLVM, after rustc laid out the coroutine, so the
/// loop future reserves room for the fire future even when nobody listens.
pub fn future_sizes() -> Vec<(&'static str, usize, usize)> {
    fn sizes<C: PluginChain>(name: &'static str, chain: &C) -> (&'static str, usize, usize) {
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let fire_size = size_of_val(&fire(chain, &mut ctx));
        (name, fire_size, size_of_val(&observe_loop(chain, 0)))
    }
    vec![
        sizes("none", &()),
        sizes("silent8", &silent8()),
        sizes("default8", &default8()),
        sizes("one_of_8", &one_of_8()),
        sizes("sync8", &sync8()),
        sizes("async8", &async8()),
    ]
}

/// Prepared state for every scenario (registries, contexts' borrowed data).
pub struct Bench {
    dyn8: Registry,
    dyn_silent8: Registry,
    replace: ReplaceInput,
}

impl Default for Bench {
    fn default() -> Self {
        Self { dyn8: Registry::listening8(), dyn_silent8: Registry::silent8(), replace: ReplaceInput::default() }
    }
}

impl Bench {
    /// Runs scenario `name` for `n` triggers; `false` if there is no such scenario.
    pub fn run(&self, name: &str, n: u64) -> bool {
        match name {
            "none" => scenario_none(n),
            "silent8" => scenario_silent8(n),
            "nogate_silent8" => scenario_nogate_silent8(n),
            "default8" => scenario_default8(n),
            "one_of_8" => scenario_one_of_8(n),
            "direct_one" => scenario_direct_one(n),
            "sync8" => scenario_sync8(n),
            "solo_sync8" => scenario_solo_sync8(n),
            "direct_sync8" => scenario_direct_sync8(n),
            "async8" => scenario_async8(n),
            "direct_async8" => scenario_direct_async8(n),
            "dyn_silent8" => scenario_dyn_silent8(&self.dyn_silent8, n),
            "dyn8" => scenario_dyn8(&self.dyn8, n),
            "replace_none" => scenario_replace_none(&self.replace, n),
            "replace_silent8" => scenario_replace_silent8(&self.replace, n),
            "replace_sync8" => scenario_replace_sync8(&self.replace, n),
            "direct_replace_sync8" => scenario_direct_replace_sync8(&self.replace, n),
            _ => return false,
        }
        true
    }
}

/// Enqueues `n` no-op tasks (a task named `noop` taking no argument) from
/// `in_flight` concurrent client tasks; returns the time taken. Shared by
/// the Redis and Postgres end-to-end benchmarks.
pub async fn fill_noop<T: qtasks::TaskSet, C: PluginChain, B: qtasks::Backend>(
    app: &qtasks::QueueTasks<T, C, B>,
    n: u64,
    in_flight: u64,
) -> Result<std::time::Duration, Box<dyn std::error::Error + Send + Sync>> {
    let start = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let app = app.clone();
        let share = n / in_flight + u64::from(i < n % in_flight);
        set.spawn(async move {
            for _ in 0..share {
                app.add_task("noop", ()).await?;
            }
            Ok::<_, qtasks::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_runs_and_handlers_fire() {
        let bench = Bench::default();
        for name in SCENARIOS {
            assert!(bench.run(name, 3), "{name}");
        }
        assert!(!bench.run("nope", 1));
        // sync8 + direct_sync8 + async8 + direct_async8 + dyn8: 5 × 3 each.
        assert!(COUNTERS[7].load(Relaxed) >= 15);
    }
}
