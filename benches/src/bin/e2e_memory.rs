//! End to end on the in-memory backend: no-op tasks per second, the cost of
//! a listener on all 56 triggers, peak memory with a full queue, and how a
//! large backlog drains.
//!
//! ```sh
//! e2e_memory throughput <tasks> <concurrency> <none|noop56|count56>
//! e2e_memory memory <tasks>
//! e2e_memory backlog <tasks> <window> <concurrency>
//! ```
//!
//! Each mode prints one `RESULT key=value …` line (read by `benches/run-all.sh`).
//!
//! - `throughput`: enqueues `tasks` no-op tasks one at a time (timed: the
//!   enqueue rate), then starts a worker running `concurrency` tasks at once
//!   and times until the last task is final and the worker has shut down
//!   (every task finished): the run rate. Then it checks that every record is
//!   `success`. `none` has no plugin, `noop56` one plugin whose 56 sync
//!   handlers do nothing, `count56` the same plugin shape whose handlers each
//!   add 1 to a per-thread counter (so the calls cannot be compiled away; the
//!   calls per task are printed for the enqueue and the run). With `E2E_SKIP_CHECK`
//!   set, the final check of every record is skipped (for instruction counts).
//! - `memory`: enqueues `tasks` tasks without a worker and reports the peak
//!   resident memory (`VmHWM` of `/proc/self/status`) and the growth per task
//!   from the resident memory before the first enqueue.
//! - `backlog`: enqueues `tasks` tasks, then drains them with one worker and
//!   records when each `window` tasks have finished (a plugin on
//!   `worker_execute_after`), printing the rate of every window and the
//!   CPU time per task of every window (all threads of the process, from
//!   `/proc/self/task/*/schedstat`).
//!
//! `E2E_CURRENT_THREAD=1` runs everything on a single-thread tokio runtime;
//! `E2E_INLINE=1` starts the worker with
//! [`run_inline`](qtasks::WorkerBuilder::run_inline) (its runs polled in
//! the worker's own task instead of spawned).

use qtasks::model::{NewTask, TaskMessage, TaskRecord};
use qtasks::triggers::*;
use qtasks::{Backend, PluginChain, QueueTasks, TaskSet, TaskStatus, Value, plugin, task};
use serde_json::Map;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether `E2E_INLINE` asks for a worker that runs its tasks inline.
fn inline() -> bool {
    std::env::var_os("E2E_INLINE").is_some()
}

/// The task every benchmark runs.
#[task]
async fn noop() {}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Handler calls, counted per thread so counting adds no contention: each
/// thread bumps its own counter (a relaxed load and store, no lock prefix).
mod hits {
    use std::cell::OnceCell;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    static ALL: Mutex<Vec<Arc<AtomicU64>>> = Mutex::new(Vec::new());

    thread_local! {
        static MINE: OnceCell<Arc<AtomicU64>> = const { OnceCell::new() };
    }

    #[inline(always)]
    pub fn bump() {
        MINE.with(|c| {
            let c = c.get_or_init(|| {
                let c = Arc::new(AtomicU64::new(0));
                ALL.lock().unwrap().push(Arc::clone(&c));
                c
            });
            c.store(c.load(Relaxed) + 1, Relaxed);
        });
    }

    pub fn total() -> u64 {
        ALL.lock().unwrap().iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Defines a unit struct and a `#[plugin]` impl with a sync handler for each
/// of the 56 triggers, every one running `$body` (replace and intercept
/// handlers then return `None`: they never replace anything).
macro_rules! listener56 {
    ($(#[$meta:meta])* $name:ident $body:block) => {
        $(#[$meta])*
        pub struct $name;

        #[plugin]
        impl $name {
        fn qtasks_add_task_before_broker(&self, _ctx: &QtasksAddTaskBeforeBroker<'_>) -> Option<NewTask> {
            $body;
            None
        }
        fn qtasks_add_task_after_broker(&self, _ctx: &QtasksAddTaskAfterBroker<'_>) $body
        fn qtasks_get(&self, _ctx: &QtasksGet<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn qtasks_stop(&self, _ctx: &QtasksStop<'_>) $body
        fn qtasks_ping(&self, _ctx: &QtasksPing<'_>) $body
        fn qtasks_flush_all(&self, _ctx: &QtasksFlushAll<'_>) $body
        fn broker_listen_start(&self, _ctx: &BrokerListenStart<'_>) $body
        fn broker_add_worker(&self, _ctx: &BrokerAddWorker<'_>) -> Option<TaskMessage> {
            $body;
            None
        }
        fn broker_add_before(&self, _ctx: &BrokerAddBefore<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn broker_add_after(&self, _ctx: &BrokerAddAfter<'_>) $body
        fn broker_get(&self, _ctx: &BrokerGet<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn broker_update(&self, _ctx: &BrokerUpdate<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn broker_start(&self, _ctx: &BrokerStart<'_>) $body
        fn broker_stop(&self, _ctx: &BrokerStop<'_>) $body
        fn broker_remove_finished_task(&self, _ctx: &BrokerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn broker_running_older_tasks(&self, _ctx: &BrokerRunningOlderTasks<'_>) $body
        fn broker_flush_all(&self, _ctx: &BrokerFlushAll<'_>) $body
        fn storage_add(&self, _ctx: &StorageAdd<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn storage_get(&self, _ctx: &StorageGet<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn storage_get_all(&self, _ctx: &StorageGetAll<'_>) -> Option<Vec<TaskRecord>> {
            $body;
            None
        }
        fn storage_update(&self, _ctx: &StorageUpdate<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn storage_remove_finished_task(&self, _ctx: &StorageRemoveFinishedTask<'_>) $body
        fn storage_start(&self, _ctx: &StorageStart<'_>) $body
        fn storage_stop(&self, _ctx: &StorageStop<'_>) $body
        fn storage_add_process(&self, _ctx: &StorageAddProcess<'_>) -> Option<TaskMessage> {
            $body;
            None
        }
        fn storage_running_older_tasks(&self, _ctx: &StorageRunningOlderTasks<'_>) -> Option<TaskMessage> {
            $body;
            None
        }
        fn storage_delete_finished_tasks(&self, _ctx: &StorageDeleteFinishedTasks<'_>) $body
        fn storage_flush_all(&self, _ctx: &StorageFlushAll<'_>) $body
        fn global_config_set(&self, _ctx: &GlobalConfigSet<'_>) -> Option<Value> {
            $body;
            None
        }
        fn global_config_get(&self, _ctx: &GlobalConfigGet<'_>) -> Option<Value> {
            $body;
            None
        }
        fn global_config_get_all(&self, _ctx: &GlobalConfigGetAll<'_>) -> Option<Map<String, Value>> {
            $body;
            None
        }
        fn global_config_get_match(&self, _ctx: &GlobalConfigGetMatch<'_>) -> Option<Map<String, Value>> {
            $body;
            None
        }
        fn global_config_start(&self, _ctx: &GlobalConfigStart<'_>) $body
        fn global_config_stop(&self, _ctx: &GlobalConfigStop<'_>) $body
        fn global_config_set_status(&self, _ctx: &GlobalConfigSetStatus<'_>) $body
        fn worker_add(&self, _ctx: &WorkerAdd<'_>) -> Option<TaskMessage> {
            $body;
            None
        }
        fn worker_start(&self, _ctx: &WorkerStart<'_>) $body
        fn worker_stop(&self, _ctx: &WorkerStop<'_>) $body
        fn worker_execute_before(&self, _ctx: &WorkerExecuteBefore<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn worker_run_task_before(&self, _ctx: &WorkerRunTaskBefore<'_>) $body
        fn worker_task_error_retry(&self, _ctx: &WorkerTaskErrorRetry<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn worker_remove_finished_task(&self, _ctx: &WorkerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
            $body;
            None
        }
        fn worker_execute_after(&self, _ctx: &WorkerExecuteAfter<'_>) $body
        fn task_executor_middlewares_execute(&self, _ctx: &TaskExecutorMiddlewaresExecute<'_>) $body
        fn task_executor_args_replace(&self, _ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
            $body;
            None
        }
        fn task_executor_before_execute(&self, _ctx: &TaskExecutorBeforeExecute<'_>) $body
        fn task_executor_run_task(&self, _ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
            $body;
            None
        }
        fn task_executor_run_task_gen(&self, _ctx: &TaskExecutorRunTaskGen<'_>) -> Option<Vec<Value>> {
            $body;
            None
        }
        fn task_executor_run_task_trigger_error(&self, _ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
            $body;
            None
        }
        fn task_executor_after_execute(&self, _ctx: &TaskExecutorAfterExecute<'_>) $body
        fn task_executor_after_execute_result_replace(&self, _ctx: &TaskExecutorAfterExecuteResultReplace<'_>) -> Option<Value> {
            $body;
            None
        }
        fn task_executor_decode(&self, _ctx: &TaskExecutorDecode<'_>) -> Option<Value> {
            $body;
            None
        }
        fn task_executor_task_close(&self, _ctx: &TaskExecutorTaskClose<'_>) $body
        fn starter_start(&self, _ctx: &StarterStart<'_>) $body
        fn starter_stop(&self, _ctx: &StarterStop<'_>) $body
        fn stats_inspect(&self, _ctx: &StatsInspect<'_>) $body
        }
    };
}

listener56! {
    /// Listens to all 56 triggers and does nothing.
    Noop56 {}
}

listener56! {
    /// Listens to all 56 triggers and counts the calls (per thread).
    Count56 { hits::bump() }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
    args.get(i).ok_or_else(|| format!("missing <{what}>"))?.parse().map_err(|_| format!("bad <{what}>").into())
}

/// Enqueues `n` no-op tasks one at a time; returns the last id and the time taken.
async fn fill<T: TaskSet, C: PluginChain, B: Backend>(
    app: &QueueTasks<T, C, B>,
    n: u64,
) -> Res<(qtasks::Uuid, Duration)> {
    let start = Instant::now();
    let mut last = None;
    for _ in 0..n {
        last = Some(app.add_task("noop", ()).await?.uuid());
    }
    Ok((last.ok_or("no task")?, start.elapsed()))
}

/// Counts the records by status; errors unless all `n` are `success`.
async fn check_all_success<T: TaskSet, C: PluginChain, B: Backend>(app: &QueueTasks<T, C, B>, n: u64) -> Res<()> {
    let all = app.get_all().await?;
    let ok = all.iter().filter(|t| t.status == TaskStatus::Success).count() as u64;
    if all.len() as u64 != n || ok != n {
        return Err(format!("expected {n} successful records, found {} records, {ok} successful", all.len()).into());
    }
    Ok(())
}

async fn throughput<T: TaskSet, C: PluginChain>(
    app: QueueTasks<T, C>,
    plugins: &str,
    n: u64,
    concurrency: usize,
) -> Res<()> {
    let (last, enqueue) = fill(&app, n).await?;
    let enqueue_hits = hits::total();
    let start = Instant::now();
    let worker = app.worker().max_tasks_process(concurrency).run_inline(inline()).start().await?;
    let done = app.wait(last, Duration::from_secs(3600)).await?;
    worker.shutdown().await;
    let run = start.elapsed();
    if done.status != TaskStatus::Success {
        return Err(format!("last task ended {:?}", done.status).into());
    }
    let hits = hits::total() - enqueue_hits;
    // The instruction counts of `run-all.sh` leave the check out (it sorts every record).
    if std::env::var_os("E2E_SKIP_CHECK").is_none() {
        check_all_success(&app, n).await?;
    }
    println!(
        "RESULT bench=memory_throughput system=qtasks plugins={plugins} concurrency={concurrency} tasks={n} \
         enqueue_s={:.3} enqueue_per_s={:.0} run_s={:.3} run_per_s={:.0} enqueue_handler_calls_per_task={:.2} \
         run_handler_calls_per_task={:.2}",
        enqueue.as_secs_f64(),
        n as f64 / enqueue.as_secs_f64(),
        run.as_secs_f64(),
        n as f64 / run.as_secs_f64(),
        enqueue_hits as f64 / n as f64,
        hits as f64 / n as f64,
    );
    Ok(())
}

async fn memory(n: u64) -> Res<()> {
    let app = QueueTasks::builder("e2e-memory").task::<Noop>().build()?;
    // Warm up the allocator and the runtime with one task, then measure from here.
    fill(&app, 1).await?;
    let before = status_kb("VmRSS:");
    let (_, enqueue) = fill(&app, n).await?;
    let hwm = status_kb("VmHWM:");
    let rss = status_kb("VmRSS:");
    assert_eq!(app.backend().queued() as u64, n + 1);
    println!(
        "RESULT bench=memory_peak system=qtasks tasks={n} rss_before_kb={before} vmhwm_kb={hwm} rss_after_kb={rss} \
         peak_mib={:.1} bytes_per_task={:.0} enqueue_per_s={:.0}",
        hwm as f64 / 1024.0,
        (hwm.saturating_sub(before) * 1024) as f64 / n as f64,
        n as f64 / enqueue.as_secs_f64(),
    );
    Ok(())
}

/// Finished tasks, tasks that did not end `success`, and when each window ended.
static DONE: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static WINDOW: AtomicU64 = AtomicU64::new(u64::MAX);
static START: OnceLock<Instant> = OnceLock::new();
/// End of each window: wall time since the start, CPU time of the process (ns).
static MARKS: Mutex<Vec<(Duration, u64)>> = Mutex::new(Vec::new());

/// CPU time of every thread of this process so far, in ns (the first field
/// of `/proc/self/task/*/schedstat`): unlike wall time, not inflated when
/// other processes take the cores.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Counts finished tasks and notes the time at the end of every window.
#[plugin(on = "worker_execute_after")]
fn drained(ctx: &WorkerExecuteAfter<'_>) {
    if ctx.model.status != TaskStatus::Success {
        FAILED.fetch_add(1, Relaxed);
    }
    let n = DONE.fetch_add(1, Relaxed) + 1;
    if n.is_multiple_of(WINDOW.load(Relaxed)) {
        let at = START.get().map_or(Duration::ZERO, Instant::elapsed);
        MARKS.lock().unwrap().push((at, cpu_ns()));
    }
}

async fn backlog(n: u64, window: u64, concurrency: usize) -> Res<()> {
    let app = QueueTasks::builder("e2e-backlog").task::<Noop>().plugin(Drained).build()?;
    let (last, enqueue) = fill(&app, n).await?;
    WINDOW.store(window, Relaxed);
    let cpu_start = cpu_ns();
    START.set(Instant::now()).map_err(|_| "started twice")?;
    let worker = app.worker().max_tasks_process(concurrency).run_inline(inline()).start().await?;
    let done = app.wait(last, Duration::from_secs(3600)).await?;
    worker.shutdown().await;
    let total = START.get().map_or(Duration::ZERO, Instant::elapsed);
    let marks = MARKS.lock().unwrap().clone();
    let mut rates = Vec::new();
    let mut cpu_per_task = Vec::new();
    let (mut prev, mut prev_cpu) = (Duration::ZERO, cpu_start);
    for &(at, cpu) in &marks {
        rates.push(window as f64 / (at - prev).as_secs_f64());
        cpu_per_task.push(format!("{:.3}", cpu.saturating_sub(prev_cpu) as f64 / 1000.0 / window as f64));
        (prev, prev_cpu) = (at, cpu);
    }
    let failed = FAILED.load(Relaxed);
    if done.status != TaskStatus::Success || failed > 0 || DONE.load(Relaxed) != n {
        return Err(format!("{failed} tasks failed, {} of {n} finished", DONE.load(Relaxed)).into());
    }
    check_all_success(&app, n).await?;
    let (min, max) = rates.iter().fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let first = rates.first().copied().unwrap_or(0.0);
    let last_rate = rates.last().copied().unwrap_or(0.0);
    let list: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "RESULT bench=memory_backlog system=qtasks tasks={n} window={window} concurrency={concurrency} \
         enqueue_per_s={:.0} run_per_s={:.0} first_window_per_s={first:.0} last_window_per_s={last_rate:.0} \
         min_window_per_s={min:.0} max_window_per_s={max:.0} last_over_first={:.3} min_over_max={:.3} errors={failed} \
         windows={} windows_cpu_us_per_task={}",
        n as f64 / enqueue.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        last_rate / first,
        min / max,
        list.join(","),
        cpu_per_task.join(","),
    );
    Ok(())
}

/// A multi-thread runtime (one worker thread per core), or with
/// `E2E_CURRENT_THREAD` set a single-thread one: `run-all.sh` counts
/// instructions that way, so thread hand-offs do not add noise.
fn main() -> Res<()> {
    let mut runtime = if std::env::var_os("E2E_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(run())
}

async fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let n = arg(&args, 1, "tasks")?;
            let concurrency = arg(&args, 2, "concurrency")?;
            let builder = QueueTasks::builder("e2e-throughput").task::<Noop>();
            match args.get(3).map(String::as_str) {
                Some("none") => throughput(builder.build()?, "none", n, concurrency).await,
                Some("noop56") => throughput(builder.plugin(Noop56).build()?, "noop56", n, concurrency).await,
                Some("count56") => throughput(builder.plugin(Count56).build()?, "count56", n, concurrency).await,
                _ => Err("plugins: none | noop56 | count56".into()),
            }
        }
        Some("memory") => memory(arg(&args, 1, "tasks")?).await,
        Some("backlog") => {
            backlog(arg(&args, 1, "tasks")?, arg(&args, 2, "window")?, arg(&args, 3, "concurrency")?).await
        }
        _ => Err("usage: e2e_memory throughput <tasks> <concurrency> <none|noop56|count56> | memory <tasks> | \
                  backlog <tasks> <window> <concurrency>"
            .into()),
    }
}
