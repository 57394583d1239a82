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
//!     .entry(ScheduleEntry::cron_in("30 7 * * MON-FRI", "Europe/Paris", call("report", ()))?) // 07:30 in Paris
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
//! - **Cron is UTC unless given a zone.** Expressions are read in UTC
//!   against the system clock, or on the wall clock of the IANA time zone
//!   given to [`ScheduleEntry::cron_in`] (see
//!   [below](#time-zones-and-daylight-saving-time)); the host's own time
//!   zone is never used. Expressions have 5 fields (`minute hour
//!   day-of-month month day-of-week`) or 6, with seconds first; names
//!   (`MON`, `JAN`), ranges, steps, lists, `L`, `W`, `#` and nicknames such
//!   as `@hourly` are understood. When both day fields are restricted, a
//!   day matching either one matches (as in Vixie cron).
//! - **Once per tick across processes.** Several processes may run the
//!   same schedule on one backend (one next to each worker, say): each tick
//!   is claimed in the backend ([`Backend::claim`](crate::Backend::claim))
//!   under the entry's description and the tick, and only the process that
//!   claims it enqueues. A cron tick is its occurrence; an interval tick is
//!   the slot of wall-clock time (`unix time / interval`) its timer falls
//!   in, so schedulers started at different times agree. Ticks claimed
//!   elsewhere are counted in [`EntryStats::claimed_elsewhere`]; every task
//!   carries its tick in `extra["schedule_tick"]`. Entries must have the
//!   same description (or name) in every process to be deduplicated; a
//!   cron tick is an instant (Unix milliseconds), the same in every process
//!   whatever its zone.
//!
//! # Time zones and daylight-saving time
//!
//! [`ScheduleEntry::cron`] reads its expression in UTC;
//! [`ScheduleEntry::cron_in`] reads it on the wall clock of an IANA time
//! zone: `cron_in("0 3 * * *", "Europe/Paris", call)` fires at 03:00 in
//! Paris, which is 01:00 UTC in summer and 02:00 UTC in winter. Its
//! description names the zone (`cron "0 3 * * *" (Europe/Paris): cleanup`).
//! The zone database is compiled in (`chrono-tz`), so it does not depend on
//! the host's `tzdata`; new rules arrive with a qtasks release.
//!
//! Where a zone changes its offset, some wall times do not exist (spring
//! forward: in Paris on 29 March 2026, 02:00 to 02:59) and some happen twice
//! (fall back: on 25 October 2026, 02:00 to 02:59 come in summer time, then
//! again an hour later in winter time). What fires then depends on the
//! entry:
//!
//! | | **time of day**: one second (0 in a 5-field expression), one minute and one hour (`30 2 * * *`, `0 0 3 * * MON`, `@daily`) | **repeating**: a `*`, a step, a range or a list in the second, minute or hour field (`0 * * * *`, `@hourly`, `*/15 * * * *`, `30 2,14 * * *`) |
//! | --- | --- | --- |
//! | skipped wall time | fires once, at the first instant after the gap, the same day: 02:30 fires at 03:00 summer time | the times in the gap do not exist and do not fire: an hourly entry fires at 01:00 winter time, then at 03:00 summer time, one hour later |
//! | repeated wall time | fires once, at its first occurrence: 02:30 summer time, not 02:30 winter time | fires on both passes: an hourly entry fires at 02:00 summer time and at 02:00 winter time, one hour later |
//!
//! So a time-of-day entry fires once every day it matches, neither losing a
//! night nor running twice, and a repeating entry keeps its pace in real
//! time: an hourly entry fires 23 times on the spring day and 25 on the
//! autumn day, one hour apart throughout. A scheduler started between the
//! two passes of a repeated time of day does not fire it that day (it
//! already happened). A jump of more than two hours (Samoa skipped 30
//! December 2011 whole) is a change of calendar, not daylight saving: the
//! times it skips do not fire, and the entry goes on after it.
//!
//! These are the rules of Vixie cron and cronie ("if time has moved forward,
//! those jobs that would have run in the interval that has been skipped will
//! be run immediately. Conversely, if time has moved backward, care is taken
//! to avoid running jobs twice"; jobs with wildcards run on the new time), as
//! croner, the cron engine qtasks uses, implements them. The alternatives
//! lose or double work: node-cron and Spring skip a time of day that falls
//! in the gap (a nightly job loses a night), Celery beat's crontab has no
//! stated rule and open reports of runs missed, late or repeated around the
//! change (an hourly task skipping the repeated hour, among others), and
//! Sidekiq's author advises UTC instead. One difference from Vixie cron,
//! which counts only a `*` in the minute or hour field as repeating: a list
//! or a range there is repeating too (croner's rule), so `30 2,14 * * *` in
//! Paris skips its 02:30 in March and fires it twice in October. To have
//! each time handled as a time of day, give each its own entry
//! (`30 2 * * *` and `30 14 * * *`).
//!
//! [`ScheduleEntry::next_after`] tells when an entry fires next after a
//! given time, with these rules, without waiting for it.

use crate::client::{Client, Signature};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

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
    /// A time zone name that is not in the IANA time zone database (as
    /// compiled into qtasks: `chrono-tz`).
    #[error(
        "unknown time zone `{zone}` for the cron schedule of task `{task}`{}; \
         expected an IANA name such as `Europe/Paris`, `America/New_York` or `UTC`",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownTimeZone {
        /// The name as given.
        zone: String,
        /// The entry's task.
        task: String,
        /// A known name close to it, if there is one (`Europe/Paris` for
        /// `europe/paris`, `Paris` or `Europe/Pariss`).
        suggestion: Option<String>,
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
    /// The entry's description (`every 5s: report`, `cron "0 3 * * *" (UTC): report`,
    /// `cron "0 3 * * *" (Europe/Paris): report`) or the name given with [`ScheduleEntry::name`]; also the `schedule` extra
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
    /// When the entry fires next, once its timer is set.
    pub next_run: Option<SystemTime>,
}

/// When an entry fires.
enum When {
    Every(Duration),
    Cron(Box<CronSchedule>),
}

/// A cron expression read on the wall clock of a time zone.
struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// The first occurrence strictly after `after`, with the daylight-saving
    /// rules of the [module docs](self#time-zones-and-daylight-saving-time).
    fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
        let search = |from: DateTime<Utc>, inclusive: bool| {
            let local = from.with_timezone(&self.zone);
            self.cron.find_next_occurrence(&local, inclusive).map(|next| next.with_timezone(&Utc))
        };
        let mut next = search(after, false);
        // croner looks at most 2 hours into a gap for its end and gives up
        // past a longer one (Samoa skipped 30 December 2011 whole). Nothing
        // matched before that gap, so the search goes on from its end.
        let mut from = after;
        while let Err(CronError::TimeSearchLimitExceeded) = next {
            let Some(end) = self.end_of_long_gap(from) else { break };
            next = search(end, true);
            from = end;
        }
        next
    }

    /// The first instant after the zone's clock jumps forward by more than
    /// two hours, within a year after `after`.
    fn end_of_long_gap(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::{Offset, TimeDelta, TimeZone};
        let offset = |at: DateTime<Utc>| self.zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
        let long = |from: DateTime<Utc>, to: DateTime<Utc>| offset(to) - offset(from) > 2 * 3600;
        let mut start = after;
        for _ in 0..=366 {
            let end = start.checked_add_signed(TimeDelta::days(1))?;
            if long(start, end) {
                let (mut before, mut past) = (start, end);
                while past - before > TimeDelta::seconds(1) {
                    let mid = before + (past - before) / 2;
                    if long(start, mid) { past = mid } else { before = mid }
                }
                return Some(past);
            }
            start = end;
        }
        None
    }
}

/// One entry of a schedule: a call and when to enqueue it. Made by
/// [`ScheduleEntry::every`], [`ScheduleEntry::cron`] (UTC) or
/// [`ScheduleEntry::cron_in`] (a time zone), then added with
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
            Self::Cron(cron) => write!(f, "Cron({:?}, {})", cron.cron.pattern.to_string(), cron.zone.name()),
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
    /// For another time zone, see [`ScheduleEntry::cron_in`].
    ///
    /// The expression has 5 fields (`minute hour day-of-month month
    /// day-of-week`) or 6 with seconds first (`*/5 * * * * *`: every five
    /// seconds). An expression that does not parse, or that matches no
    /// time at all (`0 0 30 2 *`), is an error naming it and what is wrong.
    /// The entry's description is `cron "0 3 * * *" (UTC): cleanup`.
    pub fn cron(expression: &str, call: Signature) -> Result<Self, ScheduleError> {
        Self::cron_zoned(expression, Tz::UTC, call)
    }

    /// Enqueues `call` at each time the cron `expression` matches on the
    /// wall clock of the time `zone`, an IANA name such as `Europe/Paris`:
    /// `cron_in("0 3 * * *", "Europe/Paris", call)` fires at 03:00 in Paris,
    /// summer and winter alike.
    ///
    /// The expression is read as by [`ScheduleEntry::cron`]. Around
    /// daylight-saving changes, a time of day that is skipped fires at the
    /// end of the gap and one that occurs twice fires once; see
    /// [the rules](self#time-zones-and-daylight-saving-time).
    ///
    /// An unknown zone is [`ScheduleError::UnknownTimeZone`], with a
    /// suggestion when a known name is close (`europe/paris`, `Paris`).
    /// The entry's description names the zone:
    /// `cron "0 3 * * *" (Europe/Paris): cleanup`. `"UTC"` is the same as
    /// [`ScheduleEntry::cron`].
    ///
    /// ```
    /// use qtasks::{ScheduleEntry, call};
    ///
    /// let entry = ScheduleEntry::cron_in("0 3 * * *", "Europe/Paris", call("cleanup", ()))?;
    /// assert_eq!(entry.description(), r#"cron "0 3 * * *" (Europe/Paris): cleanup"#);
    ///
    /// let error = ScheduleEntry::cron_in("0 3 * * *", "Europe/Pariss", call("cleanup", ())).unwrap_err();
    /// assert!(error.to_string().contains("did you mean `Europe/Paris`?"));
    /// # Ok::<(), qtasks::ScheduleError>(())
    /// ```
    pub fn cron_in(expression: &str, zone: &str, call: Signature) -> Result<Self, ScheduleError> {
        let task = call.task_name();
        let Ok(tz) = zone.parse::<Tz>() else {
            // The expression is checked first, so its errors come first.
            parse_cron(expression).map_err(|reason| cron_error(expression, task, reason))?;
            return Err(ScheduleError::UnknownTimeZone {
                zone: zone.to_owned(),
                task: task.to_owned(),
                suggestion: suggest_zone(zone).map(str::to_owned),
            });
        };
        Self::cron_zoned(expression, tz, call)
    }

    fn cron_zoned(expression: &str, zone: Tz, call: Signature) -> Result<Self, ScheduleError> {
        let task = call.task_name().to_owned();
        let cron = parse_cron(expression).map_err(|reason| cron_error(expression, &task, reason))?;
        checked(&call)?;
        let description = format!("cron \"{}\" ({}): {task}", expression.trim(), zone.name());
        Ok(Self { when: When::Cron(Box::new(CronSchedule { cron, zone })), call, description })
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

    /// When a cron entry fires next after `after` (strictly after it), as
    /// a running scheduler computes it, daylight-saving rules included: to
    /// check an expression or show the next run. `None` for an interval
    /// entry, whose ticks count from the scheduler's start, and for a cron
    /// entry that matches no time after `after` (croner looks no further
    /// than the year 5000).
    ///
    /// ```
    /// use qtasks::{ScheduleEntry, call};
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// let nightly = ScheduleEntry::cron_in("0 3 * * *", "Europe/Paris", call("cleanup", ()))?;
    /// // 2026-07-01T00:00:00Z: the next run is 03:00 in Paris, 01:00 UTC (summer time).
    /// let after = UNIX_EPOCH + Duration::from_secs(1_782_864_000);
    /// assert_eq!(nightly.next_after(after), Some(after + Duration::from_secs(3600)));
    /// # Ok::<(), qtasks::ScheduleError>(())
    /// ```
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match &self.when {
            When::Every(_) => None,
            When::Cron(cron) => cron.next_after(utc_of(after)?).ok().map(SystemTime::from),
        }
    }
}

/// `at` as a chrono time; `None` out of chrono's range (whose `From` panics there).
fn utc_of(at: SystemTime) -> Option<DateTime<Utc>> {
    let delta = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => chrono::TimeDelta::from_std(since).ok()?,
        Err(before) => -chrono::TimeDelta::from_std(before.duration()).ok()?,
    };
    DateTime::UNIX_EPOCH.checked_add_signed(delta)
}

fn cron_error(expression: &str, task: &str, reason: String) -> ScheduleError {
    ScheduleError::Cron { expression: expression.to_owned(), task: task.to_owned(), reason }
}

/// A known zone name close to `zone`: the same but for case or spaces
/// (`europe/paris`, `America/New York`), a city alone (`Paris`), or a
/// near miss (`Europe/Pariss`, `America/Sao_Paolo`).
fn suggest_zone(zone: &str) -> Option<&'static str> {
    let norm = |s: &str| s.trim().to_lowercase().replace(' ', "_");
    let wanted = norm(zone);
    if wanted.is_empty() {
        return None;
    }
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    if let Some(name) = names().find(|name| norm(name) == wanted) {
        return Some(name);
    }
    // Beyond that, offsets are never guessed: `Etc/GMT+2` is two hours
    // *behind* UTC (POSIX signs), the opposite of what `GMT+2` means, and
    // `GMT` is not `UTC+2` either.
    let offset = |name: &str| name.contains(|c: char| c.is_ascii_digit() || c == '+');
    if offset(&wanted) {
        return None;
    }
    let names = || names().filter(|name| !offset(name));
    let city = |name: &str| name.rsplit('/').next().map(norm).unwrap_or_default();
    if let Some(name) = names().find(|name| name.contains('/') && city(name) == wanted) {
        return Some(name);
    }
    // Edits, relative to the length: a typo or two in a name.
    let close = |a: &str| strsim::normalized_damerau_levenshtein(a, &wanted);
    let score = |name: &str| {
        let city = if wanted.contains('/') { 0.0 } else { close(&city(name)) };
        close(&norm(name)).max(city)
    };
    names()
        .map(|name| (score(name), name))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
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
                next_run: None,
            }));
            stats.push(Arc::clone(&entry_stats));
            tasks.push(tokio::spawn(run_entry(self.client.clone(), entry, entry_stats, stop_rx.clone())));
        }
        if !stats.is_empty() {
            tasks.push(tokio::spawn(register(self.client.clone(), stats.clone(), stop_rx)));
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
                lock(&stats).next_run = Some(SystemTime::now() + next.saturating_duration_since(Instant::now()));
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
                let next = match cron.next_after(after) {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::error!(schedule = %entry.description, %error, "no next cron time; the entry stops");
                        return;
                    }
                };
                lock(&stats).next_run = Some(SystemTime::from(next));
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

/// The settings group schedulers register their entries in, for the
/// dashboard: `{scheduler id}-{entry index}` → the entry's [`EntryStats`]
/// as JSON, with the scheduler's host and pid; renewed every 5 s, gone 20 s
/// after the scheduler stopped.
pub const SCHEDULES: &str = "schedules";

/// Registers the entries of a running schedule (see [`SCHEDULES`]) until
/// `stop`. Written straight to the backend, without firing the
/// `global_config_*` triggers, as often as a worker's heartbeat.
async fn register(app: Client, stats: Vec<Arc<Mutex<EntryStats>>>, mut stop: watch::Receiver<bool>) {
    let id = Uuid::new_v4().simple().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    loop {
        for (i, s) in stats.iter().enumerate() {
            let s = lock(s).clone();
            let value = serde_json::json!({
                "scheduler": id, "host": host, "pid": std::process::id(),
                "description": s.description, "task_name": s.task_name, "next_run": s.next_run.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
                "fired": s.fired, "failed": s.failed, "skipped": s.skipped,
                "claimed_elsewhere": s.claimed_elsewhere, "last_error": s.last_error,
            });
            let key = format!("{}-{i}", &id[..12]);
            if let Err(error) = app.set_shared(SCHEDULES, key, value, crate::client::kv::WORKER_TTL).await {
                tracing::warn!(%error, "could not register a schedule entry; retrying");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(crate::client::kv::HEARTBEAT) => {}
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
fn count_between(cron: &CronSchedule, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let mut count = 0;
    let mut at = from;
    while count < MAX_COUNTED_SKIPS {
        match cron.next_after(at) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(at: &str) -> DateTime<Utc> {
        at.parse().expect("an RFC 3339 time")
    }

    fn schedule(expression: &str, zone: &str) -> CronSchedule {
        let entry = ScheduleEntry::cron_in(expression, zone, crate::call("t", ())).expect("a valid entry");
        let When::Cron(cron) = entry.when else { unreachable!("a cron entry") };
        *cron
    }

    /// The fire instants of `expression` in `zone` after `from` up to `to`,
    /// each on the zone's wall clock with its offset.
    fn fires(expression: &str, zone: &str, from: &str, to: &str) -> Vec<String> {
        let cron = schedule(expression, zone);
        let (mut at, to) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Ok(next) = cron.next_after(at) {
            assert!(next > at, "{next} is not after {at}");
            if next > to {
                break;
            }
            out.push(next.with_timezone(&cron.zone).to_rfc3339());
            at = next;
        }
        out
    }

    /// The time between consecutive fires, in minutes of real time.
    fn gaps_in_minutes(fires: &[String]) -> Vec<i64> {
        let instants: Vec<DateTime<Utc>> = fires.iter().map(|f| utc(f)).collect();
        instants.windows(2).map(|w| (w[1] - w[0]).num_minutes()).collect()
    }

    // Paris, 2026: summer time starts on Sunday 29 March at 01:00 UTC (02:00
    // CET becomes 03:00 CEST: 02:00 to 02:59 do not exist) and ends on Sunday
    // 25 October at 01:00 UTC (03:00 CEST becomes 02:00 CET: 02:00 to 02:59
    // happen twice).

    #[test]
    fn a_time_of_day_skipped_by_spring_forward_fires_once_at_the_end_of_the_gap() {
        let fires = fires("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z");
        assert_eq!(
            fires,
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
        // The same with seconds.
        assert_eq!(
            super::tests::fires("0 30 2 * * *", "Europe/Paris", "2026-03-29T00:00:00Z", "2026-03-29T12:00:00Z"),
            ["2026-03-29T03:00:00+02:00"]
        );
        // From just before the gap, and from the end of the gap (the fire
        // itself): one fire that day, not two.
        let cron = schedule("30 2 * * *", "Europe/Paris");
        assert_eq!(cron.next_after(utc("2026-03-29T00:59:59Z")).unwrap(), utc("2026-03-29T01:00:00Z"));
        assert_eq!(cron.next_after(utc("2026-03-29T01:00:00Z")).unwrap(), utc("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn a_time_of_day_repeated_by_fall_back_fires_once_at_its_first_occurrence() {
        let fires = fires("30 2 * * *", "Europe/Paris", "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z");
        assert_eq!(
            fires,
            [
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
                "2026-10-27T02:30:00+01:00"
            ]
        );
        let cron = schedule("30 2 * * *", "Europe/Paris");
        // 02:30 CEST is 00:30 UTC; 02:30 CET (01:30 UTC) is no fire, even
        // for a scheduler started between the two.
        assert_eq!(cron.next_after(utc("2026-10-25T00:30:00Z")).unwrap(), utc("2026-10-26T01:30:00Z"));
        assert_eq!(cron.next_after(utc("2026-10-25T01:10:00Z")).unwrap(), utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn an_hourly_entry_fires_every_real_hour_across_both_changes() {
        let spring = fires("0 * * * *", "Europe/Paris", "2026-03-28T22:30:00Z", "2026-03-29T04:30:00Z");
        assert_eq!(
            spring,
            [
                "2026-03-29T00:00:00+01:00",
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00", // 02:00 does not exist; an hour after 01:00
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T05:00:00+02:00",
                "2026-03-29T06:00:00+02:00",
            ]
        );
        let autumn = fires("0 * * * *", "Europe/Paris", "2026-10-24T22:30:00Z", "2026-10-25T04:30:00Z");
        assert_eq!(
            autumn,
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00", // 02:00 again, an hour later
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00",
                "2026-10-25T05:00:00+01:00",
            ]
        );
        // Over each whole local day: 23 fires in March, 25 in October, one
        // hour apart throughout.
        let march = fires("0 * * * *", "Europe/Paris", "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z");
        let october = fires("0 * * * *", "Europe/Paris", "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z");
        assert_eq!((march.len(), october.len()), (23, 25));
        assert!(gaps_in_minutes(&march).iter().chain(&gaps_in_minutes(&october)).all(|&m| m == 60));
        // The same for every 20 minutes.
        for (from, to) in
            [("2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"), ("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z")]
        {
            let fires = fires("*/20 * * * *", "Europe/Paris", from, to);
            assert_eq!(fires.len(), 6, "{fires:?}");
            assert!(gaps_in_minutes(&fires).iter().all(|&m| m == 20), "{fires:?}");
        }
    }

    #[test]
    fn a_list_of_hours_follows_the_repeating_rules() {
        // Not a single time of day: 02:30 is skipped in March and fires on
        // both passes in October (one entry per time of day avoids it).
        assert_eq!(
            fires("30 2,14 * * *", "Europe/Paris", "2026-03-29T00:00:00Z", "2026-03-30T12:00:00Z"),
            ["2026-03-29T14:30:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        assert_eq!(
            fires("30 2,14 * * *", "Europe/Paris", "2026-10-25T00:00:00Z", "2026-10-25T23:00:00Z"),
            ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-25T14:30:00+01:00"]
        );
    }

    #[test]
    fn a_utc_entry_is_unchanged() {
        let default = ScheduleEntry::cron("30 2 * * *", crate::call("t", ())).unwrap();
        let named = ScheduleEntry::cron_in("30 2 * * *", "UTC", crate::call("t", ())).unwrap();
        assert_eq!(default.description(), r#"cron "30 2 * * *" (UTC): t"#);
        assert_eq!(named.description(), default.description());
        for (from, to) in
            [("2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"), ("2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z")]
        {
            let fires = fires("30 2 * * *", "UTC", from, to);
            assert_eq!(fires.len(), 4);
            assert!(fires.iter().all(|f| f.ends_with("T02:30:00+00:00")), "{fires:?}");
            assert!(gaps_in_minutes(&fires).iter().all(|&m| m == 24 * 60));
        }
        // The same instants as croner on `Utc`, as before zones.
        for expression in ["30 2 * * *", "0 * * * *", "*/7 * * * * *", "0 0 9 * * MON-FRI", "@monthly"] {
            let When::Cron(cron) = ScheduleEntry::cron(expression, crate::call("t", ())).unwrap().when else {
                unreachable!()
            };
            let mut at = utc("2026-03-28T23:59:58Z");
            for _ in 0..50 {
                let plain = cron.cron.find_next_occurrence(&at, false).unwrap();
                assert_eq!(cron.next_after(at).unwrap(), plain, "{expression} after {at}");
                at = plain;
            }
        }
    }

    #[test]
    fn next_after_converts_system_times() {
        let entry = ScheduleEntry::cron_in("30 2 * * *", "Europe/Paris", crate::call("t", ())).unwrap();
        let at = SystemTime::from(utc("2026-03-29T00:00:00Z"));
        assert_eq!(entry.next_after(at), Some(SystemTime::from(utc("2026-03-29T01:00:00Z"))));
        let every = ScheduleEntry::every(Duration::from_secs(1), crate::call("t", ())).unwrap();
        assert_eq!(every.next_after(at), None);
        // Before 1970, and out of range (no panic).
        let before = SystemTime::from(utc("1969-07-20T20:17:40Z"));
        assert_eq!(entry.next_after(before), Some(SystemTime::from(utc("1969-07-21T01:30:00Z"))));
        let far = std::time::UNIX_EPOCH + Duration::from_secs(1 << 50);
        assert_eq!(entry.next_after(far), None);
        // croner stops at the year 5000.
        let leap = ScheduleEntry::cron_in("0 0 29 2 *", "Europe/Paris", crate::call("t", ())).unwrap();
        assert_eq!(leap.next_after(SystemTime::from(utc("4997-03-01T00:00:00Z"))), None);
    }

    #[test]
    fn other_zones_and_gaps() {
        // A gap at midnight (Santiago, 6 September 2026): midnight fires at
        // 01:00, the end of the gap.
        assert_eq!(
            fires("0 0 * * *", "America/Santiago", "2026-09-05T00:00:00Z", "2026-09-07T12:00:00Z"),
            ["2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"]
        );
        // Half an hour of summer time (Lord Howe, 4 October 2026: 02:00 to
        // 02:29 do not exist): 02:15 fires at 02:30.
        assert_eq!(
            fires("15 2 * * *", "Australia/Lord_Howe", "2026-10-02T12:00:00Z", "2026-10-04T00:00:00Z"),
            ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00"]
        );
        // A whole day skipped (Samoa went from 29 to 31 December 2011): the
        // entry goes on after it instead of stopping.
        assert_eq!(
            fires("0 12 * * *", "Pacific/Apia", "2011-12-28T00:00:00Z", "2012-01-01T12:00:00Z"),
            [
                "2011-12-28T12:00:00-10:00",
                "2011-12-29T12:00:00-10:00",
                "2011-12-31T12:00:00+14:00",
                "2012-01-01T12:00:00+14:00"
            ]
        );
        // A zone a few hours off UTC moves the fire instant, not the time of day.
        assert_eq!(
            fires("0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-02T12:00:00Z"),
            ["2026-01-01T09:00:00+05:30", "2026-01-02T09:00:00+05:30"]
        );
    }

    #[test]
    fn unknown_zones_are_refused_with_a_suggestion() {
        let refuse = |zone: &str| match ScheduleEntry::cron_in("0 3 * * *", zone, crate::call("cleanup", ())) {
            Err(ScheduleError::UnknownTimeZone { zone: given, task, suggestion }) => {
                assert_eq!((given.as_str(), task.as_str()), (zone, "cleanup"));
                suggestion
            }
            other => panic!("{zone}: {other:?}"),
        };
        assert_eq!(refuse("europe/paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(refuse("Europe/Pariss").as_deref(), Some("Europe/Paris"));
        assert_eq!(refuse("Paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(refuse("America/New York").as_deref(), Some("America/New_York"));
        assert_eq!(refuse("new york").as_deref(), Some("America/New_York"));
        assert_eq!(refuse("America/Sao_Paolo").as_deref(), Some("America/Sao_Paulo"));
        assert_eq!(refuse("Mars/Olympus_Mons"), None);
        assert_eq!(refuse("GMT+2"), None, "Etc/GMT+2 is UTC-2");
        assert_eq!(refuse("UTC+02:00"), None);
        assert_eq!(refuse("etc/gmt+2").as_deref(), Some("Etc/GMT+2"));
        assert_eq!(refuse(""), None);

        let message =
            ScheduleEntry::cron_in("0 3 * * *", "Europe/Pariss", crate::call("cleanup", ())).unwrap_err().to_string();
        assert!(message.contains("unknown time zone `Europe/Pariss`"), "{message}");
        assert!(message.contains("task `cleanup`") && message.contains("did you mean `Europe/Paris`?"), "{message}");
        // A bad expression is reported first.
        let error = ScheduleEntry::cron_in("0 25 * * *", "Nowhere", crate::call("cleanup", ())).unwrap_err();
        assert!(matches!(error, ScheduleError::Cron { .. }), "{error}");
    }
}
