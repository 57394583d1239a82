//! Schedules (QTasks's Timer): enqueue tasks on a fixed interval or by cron
//! expression.
//!
//! A [`Scheduler`] holds entries ([`ScheduleEntry`]), each a call (a
//! task with its arguments and options, see [`call`](crate::call)) and when
//! to enqueue it. [`Scheduler::start`] runs them on the current tokio
//! runtime, next to a worker in the same process; [`Scheduler::run_until`]
//! is for a process that only schedules, with workers elsewhere (a shared
//! backend such as Redis).
//!
//! ```
//! use qtasks::{QueueTasks, ScheduleEntry, Scheduler, call, task};
//! use std::time::Duration;
//!
//! #[task]
//! async fn report() {}
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("demo").task::<Report>().build()?;
//! let worker = app.worker().start().await?;
//! let schedule = Scheduler::new(&app)
//!     .entry(ScheduleEntry::every(Duration::from_millis(100), call("report", ()))?)
//!     .entry(ScheduleEntry::cron("0 3 * * *", call("report", ()).priority(5))?.name("nightly report")) // 03:00 UTC
//!     .start();
//! tokio::time::sleep(Duration::from_millis(250)).await;
//! let stats = schedule.shutdown().await;
//! assert_eq!(stats[0].fired, 2);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! - **Fixed rate.** An interval entry fires at `start + n × interval`
//!   (the first time one interval after the start), however long each
//!   enqueue takes. A cron entry fires at each time its expression matches.
//! - **Missed ticks are skipped, not replayed.** When an entry falls behind
//!   (a slow backend, a suspended machine, a starved runtime), it enqueues
//!   once as soon as it runs again and drops the other ticks already past,
//!   counting them in [`EntryStats::skipped`]; then it goes on at its next
//!   tick still to come, on the same grid. There is never a burst of
//!   catch-up enqueues.
//! - **Failures do not stop a schedule.** An enqueue that fails (say the
//!   backend is unreachable) is logged with `tracing` at error level and
//!   counted in [`EntryStats::failed`]; the entry fires again at its next tick.
//! - **Traceable.** Every task a schedule enqueues carries the extra field
//!   `schedule` (see [`Signature::extra`](crate::Signature::extra)): the entry's
//!   description, such as `every 5s: report`, or the name given with
//!   [`ScheduleEntry::name`].
//! - **Cron is UTC.** Expressions are read in UTC against the system clock.
//!   They have 5 fields (`minute hour day-of-month month day-of-week`) or 6,
//!   with seconds first; names (`MON`, `JAN`), ranges, steps, lists, `L`,
//!   `W`, `#` and nicknames such as `@hourly` are understood. When both day
//!   fields are restricted, a day matching either one matches (as in Vixie
//!   cron).
//! - **Once per tick across processes.** Several processes may run the
//!   same schedule on one backend (one next to each worker, say): each tick
//!   is claimed in the backend ([`Backend::claim`](crate::Backend::claim))
//!   under the entry's description and the tick, and only the process that
//!   claims it enqueues. A cron tick is its occurrence; an interval tick is
//!   the slot of wall-clock time (`unix time / interval`) its timer falls
//!   in, so schedulers started at different times agree. Ticks claimed
//!   elsewhere are counted in [`EntryStats::claimed_elsewhere`]; every task
//!   carries its tick in `extra["schedule_tick"]`. Entries must have the
//!   same description (or name) in every process to be deduplicated.

use crate::client::{Client, Signature};
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest number of missed cron occurrences counted after falling behind.
const MAX_COUNTED_SKIPS: u64 = 10_000;

/// Why a schedule entry was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An interval entry with a zero interval.
    #[error("the interval of the schedule of task `{task}` is zero; it must be at least 1 ns")]
    ZeroInterval {
        /// The entry's task.
        task: String,
    },
    /// A cron expression that does not parse or never matches.
    #[error("invalid cron expression `{expression}` for task `{task}`: {reason}")]
    Cron {
        /// The expression as given.
        expression: String,
        /// The entry's task.
        task: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call's arguments could not be encoded as JSON.
    #[error("could not encode the arguments of task `{task}` as JSON")]
    EncodeArgs {
        /// The entry's task.
        task: String,
    },
}

/// How often an entry has fired, as seen by [`ScheduleHandle::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryStats {
    /// The entry's description (`every 5s: report`, `cron "0 3 * * *" (UTC): report`)
    /// or the name given with [`ScheduleEntry::name`]; also the `schedule` extra
    /// field of the tasks it enqueues.
    pub description: String,
    /// The task the entry enqueues.
    pub task_name: String,
    /// Tasks enqueued.
    pub fired: u64,
    /// Enqueues that failed (each logged at error level).
    pub failed: u64,
    /// Ticks dropped because the entry was behind (see the
    /// [module docs](self#semantics)). For cron entries at most 10 000 are
    /// counted per catch-up.
    pub skipped: u64,
    /// Ticks another scheduler on the same backend claimed (and enqueued).
    pub claimed_elsewhere: u64,
    /// The error of the last failed enqueue, if any enqueue failed.
    pub last_error: Option<String>,
}

/// When an entry fires.
enum When {
    Every(Duration),
    Cron(Box<Cron>),
}

/// One entry of a schedule: a call and when to enqueue it. Made by
/// [`ScheduleEntry::every`] or [`ScheduleEntry::cron`], then added with
/// [`Scheduler::entry`]; every check happens when the entry is made, so
/// adding one cannot fail.
#[derive(Debug)]
pub struct ScheduleEntry {
    when: When,
    call: Signature,
    description: String,
}

impl fmt::Debug for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(period) => write!(f, "Every({period:?})"),
            Self::Cron(cron) => write!(f, "Cron({:?})", cron.pattern.to_string()),
        }
    }
}

impl ScheduleEntry {
    /// Enqueues `call` every `interval`, the first time one interval after
    /// the start.
    ///
    /// A zero interval is an error, and so are arguments that do not encode
    /// as JSON.
    pub fn every(interval: Duration, call: Signature) -> Result<Self, ScheduleError> {
        let task = call.task_name().to_owned();
        if interval.is_zero() {
            return Err(ScheduleError::ZeroInterval { task });
        }
        checked(&call)?;
        let description = format!("every {interval:?}: {task}");
        Ok(Self { when: When::Every(interval), call, description })
    }

    /// Enqueues `call` at each time the cron `expression` matches, in UTC.
    ///
    /// The expression has 5 fields (`minute hour day-of-month month
    /// day-of-week`) or 6 with seconds first (`*/5 * * * * *`: every five
    /// seconds). An expression that does not parse, or that matches no
    /// time at all (`0 0 30 2 *`), is an error naming it and what is wrong.
    pub fn cron(expression: &str, call: Signature) -> Result<Self, ScheduleError> {
        let task = call.task_name().to_owned();
        let cron = parse_cron(expression).map_err(|reason| ScheduleError::Cron {
            expression: expression.to_owned(),
            task: task.clone(),
            reason,
        })?;
        checked(&call)?;
        let description = format!("cron \"{}\" (UTC): {task}", expression.trim());
        Ok(Self { when: When::Cron(Box::new(cron)), call, description })
    }

    /// Names the entry: the name replaces the description in
    /// [`EntryStats`], in logs and in the `schedule` extra field of the
    /// tasks it enqueues.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.description = name.into();
        self
    }

    /// The entry's description, or its name if it was given one.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// An entry's arguments must encode, so a bad entry is refused up front.
fn checked(call: &Signature) -> Result<(), ScheduleError> {
    match call.args() {
        Some(_) => Ok(()),
        None => Err(ScheduleError::EncodeArgs { task: call.task_name().to_owned() }),
    }
}

/// Schedules tasks on intervals or cron expressions; see the [module docs](self).
#[must_use = "call `.start()` or `.run_until(…)` to run the schedule"]
pub struct Scheduler {
    client: Client,
    entries: Vec<ScheduleEntry>,
}

impl Scheduler {
    /// A scheduler with no entry that enqueues through `app` (an app or a
    /// [`Client`]), so the app's plugins see every enqueue.
    pub fn new(app: impl Into<Client>) -> Self {
        Self { client: app.into(), entries: Vec::new() }
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: ScheduleEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// The descriptions of the entries, in the order they were added.
    pub fn descriptions(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.description.as_str()).collect()
    }

    /// Starts every entry on the current tokio runtime and returns at once.
    ///
    /// Dropping the returned handle stops the schedule;
    /// [`ScheduleHandle::shutdown`] stops it and waits until it has.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(self) -> ScheduleHandle {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(self.entries.len());
        let mut stats = Vec::with_capacity(self.entries.len());
        tracing::info!(app = self.client.name(), entries = self.entries.len(), "scheduler started");
        for entry in self.entries {
            let entry_stats = Arc::new(Mutex::new(EntryStats {
                description: entry.description.clone(),
                task_name: entry.call.task_name().to_owned(),
                fired: 0,
                failed: 0,
                skipped: 0,
                claimed_elsewhere: 0,
                last_error: None,
            }));
            stats.push(Arc::clone(&entry_stats));
            tasks.push(tokio::spawn(run_entry(self.client.clone(), entry, entry_stats, stop_rx.clone())));
        }
        ScheduleHandle { stop, tasks, stats }
    }

    /// Runs the schedule until `signal` completes, then stops it and
    /// returns the final counts: the whole of a process that only schedules
    /// (QTasks's Timer), e.g. with `tokio::signal::ctrl_c()`.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Vec<EntryStats> {
        let handle = self.start();
        signal.await;
        handle.shutdown().await
    }
}

/// A running schedule, from [`Scheduler::start`].
///
/// Dropping it stops the schedule without waiting.
#[must_use = "dropping the handle stops the schedule"]
pub struct ScheduleHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<EntryStats>>>,
}

impl ScheduleHandle {
    /// How often each entry has fired so far, in the order the entries were added.
    pub fn stats(&self) -> Vec<EntryStats> {
        self.stats.iter().map(|s| lock(s).clone()).collect()
    }

    /// Stops every entry and waits until they have stopped; returns the
    /// final counts. An enqueue already under way is finished first, so no
    /// task is enqueued after this returns.
    pub async fn shutdown(mut self) -> Vec<EntryStats> {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "a schedule entry panicked");
            }
        }
        tracing::info!(entries = self.stats.len(), "scheduler stopped");
        self.stats()
    }
}

impl Drop for ScheduleHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl fmt::Debug for ScheduleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleHandle").field("stats", &self.stats()).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a plain counter update: a panic cannot leave it half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The nicknames a cron expression may be instead of fields.
const CRON_NICKNAMES: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];

/// Parses a 5- or 6-field expression or a nickname, and checks that it matches some time.
fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if let [nickname] = fields[..]
        && nickname.starts_with('@')
    {
        if !CRON_NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(nickname)) {
            return Err(format!("unknown nickname `{nickname}`; the known ones are {}", CRON_NICKNAMES.join(", ")));
        }
    } else if !(5..=6).contains(&fields.len()) {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), found {}",
            fields.len()
        ));
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let cron = parser
        .parse(expression)
        .map_err(|error| faulty_field(&parser, &fields).unwrap_or_else(|| error.to_string()))?;
    if cron.find_next_occurrence(&Utc::now(), false).is_err() {
        return Err("it matches no time at all (such as the 30th of February)".to_owned());
    }
    Ok(cron)
}

/// The cron fields, with seconds first, and the values each allows.
const CRON_FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12, JAN-DEC"),
    ("day-of-week", "0-7, SUN-SAT, L, #"),
];

/// Names the first field that does not parse on its own (the others `*`).
fn faulty_field(parser: &CronParser, fields: &[&str]) -> Option<String> {
    let names = CRON_FIELDS.get(CRON_FIELDS.len().checked_sub(fields.len())?..)?;
    for (i, (field, (name, allowed))) in fields.iter().zip(names).enumerate() {
        let probe: Vec<&str> = (0..fields.len()).map(|j| if j == i { *field } else { "*" }).collect();
        if let Err(error) = parser.parse(&probe.join(" ")) {
            let error = error.to_string();
            // croner's messages repeat their kind ("Component error: …").
            let reason = error.rsplit(": ").next().unwrap_or(&error).trim_end_matches('.');
            let reason = reason.strip_prefix("CronPattern contains ").unwrap_or(reason);
            return Some(format!(
                "the {name} field `{field}` is invalid: {reason} (allowed: {allowed}, with lists, ranges and steps)"
            ));
        }
    }
    None
}

/// Runs one entry until `stop`.
async fn run_entry(app: Client, entry: ScheduleEntry, stats: Arc<Mutex<EntryStats>>, mut stop: watch::Receiver<bool>) {
    match &entry.when {
        When::Every(period) => {
            let period = *period;
            // The wall clock at the timer's origin: a tick's slot is read
            // from its timer instant (so a paused clock works too).
            let (origin, wall) = (Instant::now(), unix_millis(std::time::SystemTime::now()));
            let slot = |at: Instant| (wall + u128::from(millis(at - origin))) / u128::from(millis(period).max(1));
            let claim_ttl = period.saturating_mul(4).clamp(Duration::from_secs(1), Duration::from_secs(86_400));
            let mut next = Instant::now() + period;
            loop {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep_until(next) => {}
                }
                fire(&app, &entry, &stats, slot(next).to_string(), claim_ttl).await;
                next += period;
                let now = Instant::now();
                if next < now {
                    let behind = now - next;
                    let missed = u64::try_from(behind.as_nanos() / period.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
                    next += period.saturating_mul(u32::try_from(missed).unwrap_or(u32::MAX));
                    skipped(&entry, &stats, missed);
                }
            }
        }
        When::Cron(cron) => {
            let mut after = Utc::now();
            loop {
                let next = match cron.find_next_occurrence(&after, false) {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::error!(schedule = %entry.description, %error, "no next cron time; the entry stops");
                        return;
                    }
                };
                // A timer on the monotonic clock, set from the wall clock now.
                let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(wait) => {}
                }
                fire(&app, &entry, &stats, next.timestamp_millis().to_string(), CRON_CLAIM_TTL).await;
                let now = Utc::now();
                if now > next {
                    let missed = count_between(cron, next, now);
                    if missed > 0 {
                        skipped(&entry, &stats, missed);
                    }
                }
                // Never before `next`, so an occurrence fires once even if
                // the wall clock lags the timer.
                after = now.max(next);
            }
        }
    }
}

/// How long a cron tick stays claimed: long enough for every scheduler to
/// have passed it.
const CRON_CLAIM_TTL: Duration = Duration::from_secs(600);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Occurrences in `(from, to)`, at most [`MAX_COUNTED_SKIPS`].
fn count_between(cron: &Cron, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let mut count = 0;
    let mut at = from;
    while count < MAX_COUNTED_SKIPS {
        match cron.find_next_occurrence(&at, false) {
            Ok(next) if next < to => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
}

fn skipped(entry: &ScheduleEntry, stats: &Mutex<EntryStats>, missed: u64) {
    lock(stats).skipped += missed;
    tracing::warn!(schedule = %entry.description, missed, "schedule fell behind; missed ticks skipped");
}

/// Enqueues the entry's task once and counts the outcome.
async fn fire(app: &Client, entry: &ScheduleEntry, stats: &Mutex<EntryStats>, tick: String, claim_ttl: Duration) {
    let key = format!("schedule:{}:{tick}", entry.description);
    let enqueued = match app.claim(key, claim_ttl).await {
        Ok(true) => {
            let call = entry.call.clone().extra("schedule", entry.description.as_str()).extra("schedule_tick", tick);
            app.enqueue(call).await.map(Some)
        }
        Ok(false) => Ok(None),
        Err(error) => Err(error),
    };
    match enqueued {
        Ok(None) => {
            lock(stats).claimed_elsewhere += 1;
            tracing::debug!(app = app.name(), schedule = %entry.description, "tick claimed by another scheduler");
        }
        Ok(Some(task)) => {
            lock(stats).fired += 1;
            tracing::debug!(app = app.name(), schedule = %entry.description, uuid = %task.uuid(), "scheduled task enqueued");
        }
        Err(error) => {
            {
                let mut stats = lock(stats);
                stats.failed += 1;
                stats.last_error = Some(error.to_string());
            }
            tracing::error!(
                app = app.name(),
                schedule = %entry.description,
                task = %entry.call.task_name(),
                %error,
                "scheduled enqueue failed; the schedule goes on"
            );
        }
    }
}
