//! The worker: takes tasks from the backend and runs them.

use crate::app::Error;
use crate::app::events::{Event, EventKind, emit};
use crate::app::{AppInner, QueueTasks};
use crate::backend::{Backend, BackendErrorKind, Fetch};
use crate::client::kv::{HEARTBEAT, WORKER_TTL, WORKERS, WorkerInfo};
use crate::dispatch::PluginChain;
use crate::dispatch::fire_ctx as fire;
use crate::model::TaskMessage;
use crate::queue::{Limits, QueueOrder, Rotation};
use crate::runtime::executor::Slot;
use crate::task::CancelToken;
use crate::task::TaskSet;
use crate::task::deps::WorkerDeps;
use crate::triggers::*;
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A task concurrency the worker can honour: at least 1, and few enough
/// that shutdown can wait for all of them at once.
fn slots(n: usize) -> usize {
    n.clamp(1, u32::MAX as usize)
}

/// Largest number of tasks taken from the backend in one call.
const MAX_BATCH: usize = 256;
/// How long a start keeps trying to register over a lost connection
/// before it gives up (a server that is down, not a dropped connection).
const START_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Configures and starts a worker; see [`QueueTasks::worker`].
///
/// ```
/// use qtasks::{QueueTasks, task};
///
/// #[task]
/// fn resize(width: u32) -> u32 {
///     width / 2 // a sync task: it runs on tokio's blocking pool
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = QueueTasks::builder("images").task::<Resize>().build()?;
/// let worker = app.worker().max_tasks_process(8).start().await?;
/// println!("worker {} is running", worker.info().id);
/// // In a service: `worker.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await`
/// worker.shutdown().await; // stops taking tasks, waits for the running ones
/// # Ok(())
/// # }
/// ```
#[must_use = "call `.start().await` to run the worker"]
pub struct WorkerBuilder<T, C, B> {
    app: QueueTasks<T, C, B>,
    max_tasks_process: usize,
    queues: Option<QueueOrder>,
    inline: bool,
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// A worker for this app, running up to
    /// [`Config::max_tasks_process`](crate::Config::max_tasks_process) tasks
    /// at once by default (10).
    pub fn worker(&self) -> WorkerBuilder<T, C, B> {
        WorkerBuilder {
            app: self.clone(),
            max_tasks_process: slots(self.inner.config.max_tasks_process),
            queues: None,
            inline: false,
        }
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> WorkerBuilder<T, C, B> {
    /// How many tasks run at once (QTasks's `max_tasks_process`). At least
    /// 1, at most 2^32 − 1.
    ///
    /// On a backend with leases (Redis, Postgres, the Celery format), a
    /// task's slot is freed once the task has ended and its final record
    /// is ready: the worker takes the next task while the record is
    /// written (with the other records of its batch) and the triggers and
    /// events after it run. At most as many runs are finishing as there
    /// are slots; beyond that, ended tasks keep their slots and the worker
    /// takes no more. So this bounds the task bodies that run; such a
    /// worker holds at most twice this many tasks (as many bodies, and as
    /// many runs finishing), and one that is killed may leave that many to
    /// run again once their leases expire. A sync task whose thread still
    /// runs keeps its slot. (In memory, a record is written at once, and a
    /// task keeps its slot to the end of its run.)
    pub fn max_tasks_process(mut self, n: usize) -> Self {
        self.max_tasks_process = slots(n);
        self
    }

    /// Takes tasks from these queues only, in strict order: a queue gives
    /// tasks only while the ones before it have none to give (see
    /// [`QueueOrder::Strict`]). Without it a worker takes from every queue
    /// the app knows (the default queue, those its tasks name, those it
    /// declares), in that order. A queue the app does not know is an error
    /// at [`start`](WorkerBuilder::start).
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.queues = Some(QueueOrder::Strict(queues.into_iter().map(Into::into).collect()));
        self
    }

    /// Takes tasks from these queues by weight, so none starves (see
    /// [`QueueOrder::Weighted`]): `[("critical", 6), ("default", 3), ("low", 1)]`.
    pub fn weighted_queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = (S, u32)>) -> Self {
        self.queues = Some(QueueOrder::Weighted(queues.into_iter().map(|(q, w)| (q.into(), w.max(1))).collect()));
        self
    }

    /// Runs the tasks inside the worker's own tokio task instead of
    /// spawning a tokio task for each one (the default is `false`).
    ///
    /// The worker then polls its runs (up to
    /// [`max_tasks_process`](WorkerBuilder::max_tasks_process) task bodies,
    /// and as many runs finishing, see there) together
    /// with its fetch loop: no spawn, no task cell and no cross-thread wake-up
    /// per task, so a short task costs fewer instructions (measured in
    /// BENCHMARKS.md). The price: this worker's async task bodies, and
    /// everything the worker does around them, share one thread at a time,
    /// so an async task that computes for long holds up the others and the
    /// next fetch. Sync tasks still run on tokio's blocking pool. Choose it
    /// for many short, I/O-bound async tasks; keep the default when async
    /// tasks compute or when one worker should use every core. On a backend
    /// whose server is the bottleneck it may not pay: on Redis, measured,
    /// inline runs end in smaller groups and the finishes batch less.
    ///
    /// Every guarantee holds as with spawned runs: a record per task,
    /// cancellation, time limits, a panicking task recorded as failed, and
    /// graceful or forced shutdown (the worker drives its runs to their end
    /// after it stops taking tasks).
    ///
    /// ```
    /// use qtasks::{QueueTasks, task};
    ///
    /// #[task]
    /// async fn ping(n: u32) -> u32 {
    ///     n + 1
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = QueueTasks::builder("pings").task::<Ping>().build()?;
    /// let worker = app.worker().max_tasks_process(64).run_inline(true).start().await?;
    /// assert_eq!(app.enqueue(Ping::call(1)).await?.result(std::time::Duration::from_secs(5)).await?, 2);
    /// worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// Starts the plugins (in order), then the worker loop.
    ///
    /// If a plugin's `start` fails, the plugins started before it are
    /// stopped in reverse order and the error is returned: no task runs.
    ///
    /// Before the plugins, it checks that every `Dep<T>` and `State<T>` the
    /// tasks declare is provided, and opens the per-worker dependencies
    /// ([`Provider::per_worker`](crate::Provider::per_worker)); either
    /// failure is the start's error, naming the type.
    pub async fn start(self) -> Result<Worker<T, C, B>, Error> {
        let app = Arc::clone(&self.app.inner);
        let name = app.name.as_str();
        let known = app.known_queues();
        let order = self.queues.unwrap_or_else(|| QueueOrder::Strict(known.clone()));
        if let Some(unknown) = order.names().into_iter().find(|q| !known.iter().any(|k| k == q)) {
            return Err(Error::UnknownQueue { queue: unknown.to_owned(), known });
        }
        if order.names().is_empty() {
            return Err(Error::UnknownQueue { queue: String::new(), known });
        }
        let queues = Queues { rotation: Rotation::new(&order), limits: Arc::new(app.limits()) };
        emit!(app.events, EventKind::Starting, Event::worker(EventKind::Starting, name));
        fire!(&app.chain, StarterStart { app: name });
        app.deps.check(&self.app.tasks())?;
        let deps = Arc::new(WorkerDeps::open(Arc::clone(&app.deps)).await?);
        if let Err(error) = app.chain.start().await {
            deps.close().await;
            return Err(error.into());
        }
        fire!(&app.chain, WorkerStart { app: name, max_tasks_process: self.max_tasks_process });
        fire!(&app.chain, BrokerStart { app: name });
        fire!(&app.chain, StorageStart { app: name });
        fire!(&app.chain, GlobalConfigStart { app: name });
        let mut info = WorkerInfo::new(name, app.backend.kind(), self.max_tasks_process);
        info.queues = order.names().into_iter().map(str::to_owned).collect();
        let (stop_tx, stop_rx) = watch::channel(false);
        // The first registration rides over a connection dropped at that
        // moment (the heartbeat retries later ones).
        let registered = crate::backend::retry_while_lost(
            START_RETRY,
            |e: &Error| matches!(e, Error::Backend(b) if b.kind() == BackendErrorKind::Connection),
            || self.app.register(&info, 0),
        )
        .await;
        if let Err(error) = registered {
            app.chain.stop().await;
            deps.close().await;
            return Err(error);
        }
        fire!(&app.chain, GlobalConfigSetStatus { app: name });
        let running = Arc::new(Runs::default());
        let runs = Arc::clone(&running);
        let heartbeat = tokio::spawn(heartbeat(self.app.clone(), info.clone(), Arc::clone(&running), stop_rx.clone()));
        fire!(&app.chain, BrokerListenStart { app: name });
        tracing::info!(
            app = name,
            backend = app.backend.kind(),
            max_tasks_process = self.max_tasks_process,
            "worker started"
        );

        let slots = Arc::new(Semaphore::new(self.max_tasks_process));
        let force = CancelToken::new();
        let released = Arc::new(Mutex::new(Vec::new()));
        let run = tokio::spawn(run_loop(
            Arc::clone(&app),
            Arc::clone(&deps),
            (slots, self.max_tasks_process, self.inline),
            stop_rx,
            queues,
            Forced { token: force.clone(), released: Arc::clone(&released) },
            (Arc::from(info.id.as_str()), Arc::clone(&running)),
        ));
        emit!(app.events, EventKind::WorkerRunning, Event::worker(EventKind::WorkerRunning, name));
        Ok(Worker {
            app: self.app,
            info,
            stop: stop_tx,
            run: Some(run),
            heartbeat: Some(heartbeat),
            runs,
            deps,
            force,
            released,
        })
    }
}

/// Where a worker takes its tasks from.
struct Queues {
    rotation: Rotation,
    limits: Arc<Limits>,
}

/// How a forced shutdown reaches the running tasks: they stop at once and
/// are put back in the queue; their ids are collected here.
#[derive(Clone)]
struct Forced {
    token: CancelToken,
    released: Arc<Mutex<Vec<Uuid>>>,
}

/// What a shutdown did, from [`Worker::shutdown_timeout`] and
/// [`Worker::shutdown_or`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The tasks that were still running when the shutdown was forced:
    /// stopped and put back in the queue (same attempt) for another worker.
    /// Empty after a graceful shutdown. Only tasks that had started are
    /// listed: a task a fetch had just taken from the backend when the
    /// shutdown dropped that fetch is put back too (as if never taken, its
    /// run not counted), but does not appear here.
    pub released: Vec<Uuid>,
}

/// A running worker. Shut it down with [`Worker::shutdown`]; dropping it
/// stops taking tasks but does not wait for the ones running.
pub struct Worker<T: TaskSet, C: PluginChain, B: Backend> {
    app: QueueTasks<T, C, B>,
    info: WorkerInfo,
    stop: watch::Sender<bool>,
    run: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    runs: Arc<Runs>,
    deps: Arc<WorkerDeps>,
    force: CancelToken,
    released: Arc<Mutex<Vec<Uuid>>>,
}

impl<T: TaskSet, C: PluginChain, B: Backend> Worker<T, C, B> {
    /// This worker's entry in the registry.
    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// Stops taking tasks, waits for the running ones to finish, then stops
    /// the plugins in reverse order and closes the per-worker dependencies.
    /// It waits as long as the running tasks take; see
    /// [`shutdown_timeout`](Worker::shutdown_timeout) for a bound.
    pub async fn shutdown(self) {
        self.shutdown_or(std::future::pending()).await;
    }

    /// Shuts down as [`shutdown`](Worker::shutdown) does, but waits at most
    /// `limit` for the running tasks: past it they are stopped (an async
    /// task at its current await; a sync task's thread cannot be stopped
    /// and its result is discarded) and put back in the queue, same attempt,
    /// for another worker to run. Nothing is lost; a task released this way
    /// may have done part of its work, and runs again in full.
    pub async fn shutdown_timeout(self, limit: std::time::Duration) -> ShutdownReport {
        self.shutdown_or(tokio::time::sleep(limit)).await
    }

    /// Shuts down gracefully until `force` completes, then as
    /// [`shutdown_timeout`](Worker::shutdown_timeout) does past its limit.
    /// The CLI forces on a second SIGTERM or Ctrl-C, or at
    /// `QTASKS_SHUTDOWN_TIMEOUT`.
    pub async fn shutdown_or(mut self, force: impl std::future::Future<Output = ()>) -> ShutdownReport {
        let app = Arc::clone(&self.app.inner);
        let name = app.name.as_str();
        // Stop taking tasks first, so nothing new starts while handlers run.
        let _ = self.stop.send(true);
        emit!(app.events, EventKind::Stopping, Event::worker(EventKind::Stopping, name));
        fire!(&app.chain, StarterStop { app: name });
        fire!(&app.chain, BrokerStop { app: name });
        // The loop ends once it takes no more tasks (a worker running its
        // tasks inline ends once they have finished too); then the runs
        // counted are all there are, and none left means all finished.
        let run = self.run.take();
        let runs = Arc::clone(&self.runs);
        let all = async move {
            if let Some(run) = run {
                let _ = run.await;
            }
            runs.all_ended().await;
        };
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => {}
            () = force => {
                tracing::warn!(app = name, "shutdown forced: stopping the running tasks and putting them back in the queue");
                self.force.cancel("shutdown forced");
                let _ = all.await;
            }
        }
        emit!(app.events, EventKind::WorkerStopping, Event::worker(EventKind::WorkerStopping, name));
        fire!(&app.chain, WorkerStop { app: name });
        fire!(&app.chain, StorageStop { app: name });
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.await;
        }
        if let Err(error) = app.backend.config_delete(WORKERS, &self.info.id).await {
            tracing::warn!(app = name, %error, "could not unregister the worker");
        }
        fire!(&app.chain, GlobalConfigStop { app: name });
        app.chain.stop().await;
        self.deps.close().await;
        let released = std::mem::take(&mut *self.released.lock().unwrap_or_else(|e| e.into_inner()));
        tracing::info!(app = name, released = released.len(), "worker stopped");
        ShutdownReport { released }
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> Drop for Worker<T, C, B> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Awaits `$fut`, polling the worker's inline runs `$runs` (an
/// `Option<FuturesUnordered<_>>`) beside it, if it has any; without, the
/// future is awaited as it is, with no layer around it.
macro_rules! alongside {
    ($runs:ident, $fut:expr) => {
        match $runs.as_mut() {
            None => $fut.await,
            Some(runs) => beside(runs, $fut).await,
        }
    };
}

async fn run_loop<T: TaskSet, C: PluginChain, B: Backend>(
    app: Arc<AppInner<T, C, B>>,
    deps: Arc<WorkerDeps>,
    // The worker's slots, how many, and whether its runs are inline.
    (slots, total, inline): (Arc<Semaphore>, usize, bool),
    mut stop: watch::Receiver<bool>,
    mut queues: Queues,
    forced: Forced,
    (id, running): (Arc<str>, Arc<Runs>),
) {
    // The runs this worker polls itself (see `WorkerBuilder::run_inline`);
    // `None` when each run is spawned.
    let mut runs = inline.then(FuturesUnordered::new);
    // Places for runs writing their final record, as many as slots (see `Slot`).
    let finishing = Arc::new(Semaphore::new(total));
    let mut batch: Vec<TaskMessage> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = std::time::Duration::from_millis(10);
    loop {
        // Take as many slots as are free (at least one), then as many tasks.
        let first = alongside!(runs, async {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                permit = Arc::clone(&slots).acquire_owned() => permit.ok(),
            }
        });
        let Some(first) = first else { break };
        let mut permits = vec![first];
        while permits.len() < MAX_BATCH {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // A busy worker on a backend that asks for it waits a moment for
        // more slots, so one fetch (one commit) takes many tasks.
        if let Some(gather) = app.backend.fetch_gather() {
            let want = (total / 2).min(MAX_BATCH);
            let deadline = tokio::time::Instant::now() + gather;
            while permits.len() < want && permits.len() < total {
                let more = tokio::time::timeout_at(deadline, Arc::clone(&slots).acquire_owned());
                match alongside!(runs, more) {
                    Ok(Ok(p)) => permits.push(p),
                    _ => break,
                }
            }
        }
        let from = Fetch { queues: queues.rotation.next(), limits: Arc::clone(&queues.limits) };
        let fetched = alongside!(runs, async {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                r = app.backend.fetch(&from, permits.len(), &mut batch) => Some(r),
            }
        });
        let Some(fetched) = fetched else { break };
        if let Err(error) = fetched {
            tracing::error!(app = %app.name, %error, "fetching tasks failed; retrying");
            alongside!(runs, tokio::time::sleep(backoff));
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            continue;
        }
        backoff = std::time::Duration::from_millis(10);
        for message in batch.drain(..) {
            let Some(permit) = permits.pop() else {
                // A backend gave more than was asked for: put the rest back.
                tracing::error!(app = %app.name, uuid = %message.uuid, "fetch returned more tasks than free slots; releasing");
                if let Err(error) = alongside!(runs, app.backend.release(message.uuid)) {
                    tracing::error!(app = %app.name, uuid = %message.uuid, %error, "releasing an extra task failed");
                }
                continue;
            };
            let uuid = message.uuid;
            // Boxed as soon as made, the message moved in: the future around
            // it, spawned or pushed, stays small, and a move copies a
            // future whole.
            let slot = Slot::new(permit, Arc::clone(&finishing));
            let body = Box::pin(run_body(Arc::clone(&app), Arc::clone(&deps), Arc::clone(&id), message, slot));
            let run = run_one(Arc::clone(&app), forced.clone(), uuid, Running::start(&running), body);
            match &mut runs {
                // A panic outside the task's body (whose panics are caught
                // and recorded where it runs) ends its own run only, never
                // the loop that polls it; a spawned run's task ends alone.
                Some(runs) => runs.push(std::panic::AssertUnwindSafe(run).catch_unwind().map(move |outcome| {
                    if outcome.is_err() {
                        tracing::error!(%uuid, "a task's run panicked; the task runs again when its lease expires");
                    }
                })),
                None => drop(tokio::spawn(run)),
            }
        }
    }
    // Stopped taking tasks: drive the inline runs to their end (a forced
    // shutdown cuts them short through `forced`).
    if let Some(mut runs) = runs {
        while runs.next().await.is_some() {}
    }
}

/// One task's run, from the message taken to its final record, counted
/// among the running tasks until it ends (its body holds the worker's slot
/// until the task has ended: see `Slot`). A forced shutdown stops it at its
/// next poll (a run that has not started is not started) and puts the task
/// back in the queue.
async fn run_one<T, C, B: Backend>(
    app: Arc<AppInner<T, C, B>>,
    forced: Forced,
    uuid: Uuid,
    held: Running,
    body: impl Future<Output = ()>,
) {
    if forced.token.unless_cancelled(body).await.is_none() {
        release(&app, uuid, &forced).await;
    }
    drop(held);
}

/// What a run does with the message taken: receive it, run the task, store
/// its final record.
async fn run_body<T: TaskSet, C: PluginChain, B: Backend>(
    app: Arc<AppInner<T, C, B>>,
    deps: Arc<WorkerDeps>,
    id: Arc<str>,
    mut message: TaskMessage,
    slot: Slot,
) {
    crate::runtime::executor::receive_and_run(&app, &deps, &id, &mut message, Some(slot)).await
}

/// Polls `fut` to its end, polling `runs` beside it.
async fn beside<R: Future<Output = ()>, F: Future>(runs: &mut FuturesUnordered<R>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        // Finished runs are dropped here; `Pending` (or none left) ends it.
        while let Poll::Ready(Some(())) = runs.poll_next_unpin(cx) {}
        fut.as_mut().poll(cx)
    })
    .await
}

/// The worker's runs: how many there are (its heartbeat's
/// [`WorkerInfo::in_flight`]), and a wake-up for a shutdown that waits for
/// the last to end. A run counts from its fetch to its very end: also while
/// it writes its final record without a slot (see `Slot`), and while a
/// forced shutdown puts its task back.
#[derive(Default)]
struct Runs {
    count: AtomicUsize,
    /// Set by a shutdown before it waits, so only then the last run wakes it.
    stopping: AtomicBool,
    ended: Notify,
}

impl Runs {
    /// Completes once no run is left (none starts any more: the loop that
    /// starts them has ended).
    async fn all_ended(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        crate::task::context::until_zero(&self.count, &self.ended).await;
    }
}

/// One run counted in [`Runs`] until dropped, also if it panics.
struct Running(Arc<Runs>);

impl Running {
    fn start(runs: &Arc<Runs>) -> Self {
        runs.count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(runs))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.stopping.load(Ordering::SeqCst) {
            self.0.ended.notify_waiters();
        }
    }
}

/// Puts back a task whose run a forced shutdown stopped.
async fn release<T, C, B: Backend>(app: &AppInner<T, C, B>, uuid: Uuid, forced: &Forced) {
    app.backend.unwatch_cancel(uuid);
    match app.backend.release(uuid).await {
        Ok(true) => {
            tracing::warn!(app = %app.name, %uuid, "running task stopped by a forced shutdown and put back in the queue");
            forced.released.lock().unwrap_or_else(|e| e.into_inner()).push(uuid);
        }
        // Its final record was stored before the run was dropped.
        Ok(false) => {}
        Err(error) => tracing::error!(
            app = %app.name, %uuid, %error,
            "could not put back a task stopped by a forced shutdown; it runs again when its lease expires"
        ),
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// Writes the worker's registry entry, with `in_flight` tasks running.
    async fn register(&self, info: &WorkerInfo, in_flight: usize) -> Result<(), Error> {
        if let Err(error) = self.apply_plugin_switches().await {
            tracing::warn!(app = %self.name(), %error, "could not read the plugin switches; retrying at the next heartbeat");
        }
        let plugins = self.plugins().iter().filter_map(|p| serde_json::to_value(p).ok()).collect();
        let info = WorkerInfo { heartbeat_at: Some(crate::model::now()), plugins, in_flight, ..info.clone() };
        let value = serde_json::to_value(&info).expect("a worker entry is plain data");
        self.global_set_ttl(WORKERS, &info.id, value, Some(WORKER_TTL)).await
    }
}

/// Renews the worker's registry entry until the worker stops.
async fn heartbeat<T: TaskSet, C: PluginChain, B: Backend>(
    app: QueueTasks<T, C, B>,
    info: WorkerInfo,
    running: Arc<Runs>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        if let Err(error) = app.register(&info, running.count.load(Ordering::Relaxed)).await {
            tracing::warn!(app = %app.name(), %error, "worker heartbeat failed; retrying");
        }
    }
}
