//! [`Managed`]: a switch, a time budget, a task filter, an error policy and
//! metrics around one plugin.
//!
//! Each feature costs only the plugins wrapped in `Managed`; a plain plugin
//! pays for none of it. Every handler call of a managed plugin does one
//! atomic load (the switch) and, when set, one filter check; timing and
//! counters run only with [`Managed::budget`] or [`Managed::metrics`].

use crate::dispatch::HandlerPanicked;
use crate::dispatch::{BoxError, Outcome, Plugin, PluginInfo, TriggerStats};
#[allow(unused_imports)]
use crate::model::{NewTask, TaskMessage, TaskRecord};
#[allow(unused_imports)]
use crate::triggers::*;
use crate::triggers::{Trigger, TriggerSet};
use futures::FutureExt;
#[allow(unused_imports)]
use serde_json::{Map, Value};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A trigger name that is not one of the 56 (see
/// [`Managed::try_on_error_for`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger `{0}`: the 56 trigger names are listed in `qtasks::triggers::ALL`")]
pub struct UnknownTrigger(pub String);

/// What a failing handler does to the rest of the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Report the failure and go on with the next plugin (the default).
    #[default]
    Continue,
    /// Report the failure and skip the plugins after this one, for this firing.
    Stop,
}

/// The error a handler past its time budget is reported with.
#[derive(Debug, thiserror::Error)]
#[error("handler exceeded its time budget of {budget:?} (ran {elapsed:?})")]
pub struct TimedOut {
    /// The budget.
    pub budget: Duration,
    /// How long it ran before it was dropped or noticed.
    pub elapsed: Duration,
}

/// A plugin with run-time controls and metrics.
///
/// ```
/// use qtasks::plugin::{Managed, OnError};
/// use qtasks::triggers::WorkerExecuteAfter;
/// use std::time::Duration;
///
/// #[qtasks::plugin(on = "worker_execute_after")]
/// async fn audit(_ctx: &WorkerExecuteAfter<'_>) {}
///
/// let audit = Managed::new(Audit)
///     .budget(Duration::from_millis(50))   // async handlers are dropped at 50 ms
///     .switch_off_after_timeouts(3)        // and the plugin is switched off after 3 timeouts
///     .only_tasks(["send_email"])          // only for this task; others skip it (not an error)
///     .on_error(OnError::Continue)
///     .metrics();                          // calls, errors, panics, timeouts, latency per trigger
/// let app = qtasks::QueueTasks::builder("demo").plugin(audit).build().unwrap();
/// assert_eq!(app.set_plugin_enabled("audit", false), 1);
/// ```
///
/// # Time budgets
///
/// An `async fn` handler past its budget is dropped at its current await and
/// reported as [`TimedOut`]. A blocking handler past its budget is reported
/// as timed out at once and left to finish detached on the blocking pool (a
/// thread cannot be killed): its slot stays busy until it returns
/// ([`blocking_handlers_busy`](crate::plugin::blocking_handlers_busy)) and
/// its value is discarded. A plain sync handler runs inline and cannot be
/// interrupted: past its budget it is reported when it returns and its
/// value is not used.
pub struct Managed<P> {
    plugin: P,
    enabled: AtomicBool,
    budget: Option<Duration>,
    off_after_timeouts: Option<u64>,
    only_tasks: Option<Vec<String>>,
    on_error: [OnError; 56],
    timeouts: AtomicU64,
    skip_if_start_fails: bool,
    start_error: std::sync::Mutex<Option<String>>,
    stats: Option<Box<Stats>>,
}

impl<P: Plugin> Managed<P> {
    /// Wraps a plugin: switched on, no budget, no filter, [`OnError::Continue`], no metrics.
    pub fn new(plugin: P) -> Self {
        Self {
            plugin,
            enabled: AtomicBool::new(true),
            budget: None,
            off_after_timeouts: None,
            only_tasks: None,
            on_error: [OnError::Continue; 56],
            timeouts: AtomicU64::new(0),
            skip_if_start_fails: false,
            start_error: std::sync::Mutex::new(None),
            stats: None,
        }
    }

    /// The wrapped plugin.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// If the plugin's `start` fails, logs it at error level, counts it
    /// (`qtasks_plugins_failed_total` and [`PluginInfo::start_error`]) and
    /// switches the plugin off instead of stopping start-up (the default
    /// is loud and fatal).
    pub fn skip_if_start_fails(mut self) -> Self {
        self.skip_if_start_fails = true;
        self
    }

    /// Starts switched off.
    pub fn disabled(self) -> Self {
        self.enabled.store(false, Ordering::Relaxed);
        self
    }

    /// Limits each handler call to `budget` (see the type's docs).
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Switches the plugin off after `n` timeouts.
    pub fn switch_off_after_timeouts(mut self, n: u64) -> Self {
        self.off_after_timeouts = Some(n.max(1));
        self
    }

    /// Calls the handlers only for contexts about these tasks; contexts
    /// about other tasks, or about no task, skip the plugin.
    pub fn only_tasks<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.only_tasks = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// What a failing handler does, for every trigger.
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = [policy; 56];
        self
    }

    /// What a failing handler of trigger `T` does, the trigger named by its
    /// context type, so a typo is a compile error:
    ///
    /// ```
    /// use qtasks::plugin::{Managed, OnError};
    /// use qtasks::triggers::WorkerExecuteBefore;
    /// # #[qtasks::plugin(on = "worker_execute_before")]
    /// # fn audit(_ctx: &WorkerExecuteBefore<'_>) -> Option<qtasks::TaskRecord> { None }
    /// let audit = Managed::new(Audit).on_error_for::<WorkerExecuteBefore>(OnError::Stop);
    /// ```
    pub fn on_error_for<T: Trigger>(mut self, policy: OnError) -> Self {
        self.on_error[usize::from(T::ID)] = policy;
        self
    }

    /// What a failing handler of the trigger called `trigger` does, for
    /// names read at run time (a config file): an unknown name is an
    /// error, never a panic.
    pub fn try_on_error_for(mut self, trigger: &str, policy: OnError) -> Result<Self, UnknownTrigger> {
        let t = crate::triggers::by_name(trigger).ok_or_else(|| UnknownTrigger(trigger.to_owned()))?;
        self.on_error[usize::from(t.id)] = policy;
        Ok(self)
    }

    /// Records calls, errors, panics, timeouts and latency per trigger,
    /// for [`QueueTasks::plugins`](crate::QueueTasks::plugins) and through the
    /// `metrics` crate (`qtasks_plugin_calls_total`,
    /// `qtasks_plugin_failures_total{kind}`, `qtasks_plugin_latency_seconds`,
    /// `qtasks_plugin_queue_wait_seconds`, labelled by plugin and trigger).
    pub fn metrics(mut self) -> Self {
        self.stats = Some(Box::default());
        self
    }

    /// Whether the plugin is switched on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn admit<T: Trigger>(&self, ctx: &T::Context<'_>) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(names) = &self.only_tasks {
            let admitted = T::task_name(ctx).is_some_and(|n| names.iter().any(|a| a == n));
            if !admitted {
                if let Some(stats) = &self.stats {
                    stats.triggers[T::ID as usize].skipped.fetch_add(1, Ordering::Relaxed);
                }
                return false;
            }
        }
        true
    }

    fn timed(&self) -> bool {
        self.budget.is_some() || self.stats.is_some()
    }

    /// Records a finished call and applies the budget and the error policy.
    fn finish<T: Trigger>(
        &self,
        outcome: Outcome<T::Output>,
        elapsed: Option<Duration>,
        waited: Option<Duration>,
    ) -> Outcome<T::Output> {
        let outcome = match (self.budget, elapsed) {
            (Some(budget), Some(elapsed))
                if elapsed > budget && !matches!(outcome, Outcome::Failed(_) | Outcome::Halt(_)) =>
            {
                Outcome::Failed(Box::new(TimedOut { budget, elapsed }))
            }
            _ => outcome,
        };
        let failure = match &outcome {
            Outcome::Failed(e) | Outcome::Halt(e) => Some(failure_kind(&**e)),
            _ => None,
        };
        if let Some(stats) = &self.stats {
            stats.record(self.plugin.name(), T::ID, elapsed, waited, failure);
        }
        if failure == Some(Failure::Timeout) {
            self.timed_out();
        }
        match outcome {
            Outcome::Failed(e) if self.on_error[T::ID as usize] == OnError::Stop => Outcome::Halt(e),
            other => other,
        }
    }

    #[cold]
    fn timed_out(&self) {
        let Some(limit) = self.off_after_timeouts else { return };
        let Some(stats) = &self.stats else {
            // Without metrics, count timeouts here.
            let n = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= limit {
                self.switch_off(n);
            }
            return;
        };
        let n: u64 = stats.triggers.iter().map(|t| t.timeouts.load(Ordering::Relaxed)).sum();
        if n >= limit {
            self.switch_off(n);
        }
    }

    fn switch_off(&self, timeouts: u64) {
        if self.enabled.swap(false, Ordering::Relaxed) {
            tracing::warn!(plugin = self.plugin.name(), timeouts, "plugin switched off after repeated timeouts");
        }
    }

    #[inline(always)]
    fn guard_sync<T: Trigger>(
        &self,
        ctx: &T::Context<'_>,
        call: impl FnOnce() -> Outcome<T::Output>,
    ) -> Outcome<T::Output> {
        if !self.admit::<T>(ctx) {
            return Outcome::Keep;
        }
        if !self.timed() {
            return self.finish::<T>(call(), None, None);
        }
        let started = Instant::now();
        let outcome = match catch_unwind(AssertUnwindSafe(call)) {
            Ok(outcome) => outcome,
            Err(payload) => Outcome::Failed(Box::new(HandlerPanicked::from_payload(payload))),
        };
        self.finish::<T>(outcome, Some(started.elapsed()), None)
    }

    async fn guard_async<T: Trigger, F: Future<Output = Outcome<T::Output>> + Send>(
        &self,
        admitted: bool,
        call: impl FnOnce() -> F + Send,
    ) -> Outcome<T::Output> {
        if !admitted {
            return Outcome::Keep;
        }
        if !self.timed() {
            return self.finish::<T>(call().await, None, None);
        }
        let started = Instant::now();
        let guarded = AssertUnwindSafe(call()).catch_unwind();
        let (outcome, waited) = crate::dispatch::BLOCKING_WAIT
            .scope(std::cell::Cell::new(None), async {
                let outcome = match self.budget {
                    Some(budget) => match tokio::time::timeout(budget, guarded).await {
                        Ok(done) => done,
                        Err(_) => {
                            Ok(Outcome::Failed(Box::new(TimedOut { budget, elapsed: started.elapsed() }) as BoxError))
                        }
                    },
                    None => guarded.await,
                };
                (outcome, crate::dispatch::BLOCKING_WAIT.with(std::cell::Cell::get))
            })
            .await;
        let outcome =
            outcome.unwrap_or_else(|payload| Outcome::Failed(Box::new(HandlerPanicked::from_payload(payload))));
        self.finish::<T>(outcome, Some(started.elapsed()), waited)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Error,
    Panic,
    Timeout,
}

fn failure_kind(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Failure {
    if e.is::<HandlerPanicked>() {
        Failure::Panic
    } else if e.is::<TimedOut>() {
        Failure::Timeout
    } else {
        Failure::Error
    }
}

/// Per-trigger counters and latency histograms of one managed plugin.
struct Stats {
    triggers: [TriggerCounters; 56],
    handles: [OnceLock<Handles>; 56],
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            triggers: std::array::from_fn(|_| TriggerCounters::default()),
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

#[derive(Default)]
struct TriggerCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    latency: Histogram,
    queue_wait: Histogram,
}

/// The `metrics` crate handles of one trigger, registered on first use.
struct Handles {
    calls: metrics::Counter,
    errors: metrics::Counter,
    panics: metrics::Counter,
    timeouts: metrics::Counter,
    latency: metrics::Histogram,
    queue_wait: metrics::Histogram,
}

impl Stats {
    fn record(
        &self,
        plugin: &str,
        id: u8,
        elapsed: Option<Duration>,
        waited: Option<Duration>,
        failure: Option<Failure>,
    ) {
        let t = &self.triggers[id as usize];
        let trigger = crate::triggers::ALL[id as usize].name;
        let h = self.handles[id as usize].get_or_init(|| {
            let labels = [("plugin", plugin.to_owned()), ("trigger", trigger.to_owned())];
            let kind = |k: &'static str| {
                let mut l = labels.to_vec();
                l.push(("kind", k.to_owned()));
                metrics::counter!("qtasks_plugin_failures_total", &l)
            };
            Handles {
                calls: metrics::counter!("qtasks_plugin_calls_total", &labels),
                errors: kind("error"),
                panics: kind("panic"),
                timeouts: kind("timeout"),
                latency: metrics::histogram!("qtasks_plugin_latency_seconds", &labels),
                queue_wait: metrics::histogram!("qtasks_plugin_queue_wait_seconds", &labels),
            }
        });
        t.calls.fetch_add(1, Ordering::Relaxed);
        h.calls.increment(1);
        let waited = waited.unwrap_or_default();
        if let Some(elapsed) = elapsed {
            let run = elapsed.saturating_sub(waited);
            t.latency.record(run);
            h.latency.record(run.as_secs_f64());
        }
        if waited > Duration::ZERO {
            t.queue_wait.record(waited);
            h.queue_wait.record(waited.as_secs_f64());
        }
        match failure {
            Some(Failure::Error) => {
                t.errors.fetch_add(1, Ordering::Relaxed);
                h.errors.increment(1);
            }
            Some(Failure::Panic) => {
                t.panics.fetch_add(1, Ordering::Relaxed);
                h.panics.increment(1);
            }
            Some(Failure::Timeout) => {
                t.timeouts.fetch_add(1, Ordering::Relaxed);
                h.timeouts.increment(1);
            }
            None => {}
        }
    }

    fn snapshot(&self) -> Vec<TriggerStats> {
        self.triggers
            .iter()
            .zip(crate::triggers::ALL.iter())
            .filter(|(t, _)| t.calls.load(Ordering::Relaxed) + t.skipped.load(Ordering::Relaxed) > 0)
            .map(|(t, info)| TriggerStats {
                trigger: info.name,
                calls: t.calls.load(Ordering::Relaxed),
                errors: t.errors.load(Ordering::Relaxed),
                panics: t.panics.load(Ordering::Relaxed),
                timeouts: t.timeouts.load(Ordering::Relaxed),
                skipped: t.skipped.load(Ordering::Relaxed),
                p50: t.latency.quantile(0.50),
                p90: t.latency.quantile(0.90),
                p99: t.latency.quantile(0.99),
                queue_wait_p50: t.queue_wait.quantile(0.50),
            })
            .collect()
    }
}

/// A lock-free histogram of durations in power-of-two nanosecond buckets.
struct Histogram {
    buckets: [AtomicU64; 64],
}

impl Default for Histogram {
    fn default() -> Self {
        Self { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Histogram {
    fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let bucket = 63 - ns.leading_zeros() as usize;
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(if i >= 63 { u64::MAX } else { (2u64 << i) - 1 }));
            }
        }
        None
    }
}

macro_rules! managed_plugin {
    ($(
        $(#[doc = $doc:literal])*
        $id:literal $name:ident $sync:ident $Ctx:ident ($comp:ident, $kind:ident, $Out:ty)
            apply(|$ac:tt, $av:tt| $apply:expr) task_id(|$tc:tt| $tid:expr) task_name(|$nc:tt| $tname:expr) {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        impl<P: Plugin> Plugin for Managed<P> {
            const LISTENS: TriggerSet = P::LISTENS;
            const SYNC: TriggerSet = P::SYNC;
            const CAN_STOP: bool = true;
            type Tasks = P::Tasks;

            fn name(&self) -> &str {
                self.plugin.name()
            }

            fn version(&self) -> &str {
                self.plugin.version()
            }

            async fn start(&self) -> Result<(), BoxError> {
                match self.plugin.start().await {
                    Err(error) if self.skip_if_start_fails => {
                        tracing::error!(plugin = self.plugin.name(), error = %error, "plugin failed to start; skipping it");
                        metrics::counter!("qtasks_plugins_failed_total", "plugin" => self.plugin.name().to_owned()).increment(1);
                        *self.start_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
                        self.enabled.store(false, Ordering::Relaxed);
                        Ok(())
                    }
                    other => other,
                }
            }

            fn stop(&self) -> impl Future<Output = ()> + Send {
                self.plugin.stop()
            }

            fn set_enabled(&self, on: bool) -> bool {
                self.enabled.store(on, Ordering::Relaxed);
                true
            }

            fn describe(&self, info: &mut PluginInfo) {
                self.plugin.describe(info);
                info.enabled = Some(self.is_enabled());
                info.start_error = self.start_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(stats) = &self.stats {
                    info.stats = stats.snapshot();
                }
            }

            $(
                #[inline(always)]
                fn $name(&self, ctx: &$Ctx<'_>) -> impl Future<Output = Outcome<$Out>> + Send {
                    let admitted = self.admit::<$Ctx<'static>>(ctx);
                    self.guard_async::<$Ctx<'static>, _>(admitted, move || self.plugin.$name(ctx))
                }

                #[inline(always)]
                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out> {
                    self.guard_sync::<$Ctx<'static>>(ctx, || self.plugin.$sync(ctx))
                }
            )*
        }
    };
}

crate::dispatch::trigger_table!(managed_plugin);
