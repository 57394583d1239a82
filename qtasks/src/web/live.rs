//! Live updates: one poller per router reads the backend and publishes a
//! snapshot; every browser's `GET /api/events` stream gets each changed
//! snapshot from it. The poller runs only while a stream is open.

use super::Shared;
use super::api::{WorkerRow, read_overview};
use super::source::Source;
use crate::app::Error;
use crate::backend::{MinuteCount, TaskQuery};
use crate::client::WorkerInfo;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How many of the newest tasks a snapshot carries.
pub(super) const RECENT: usize = 50;
/// How many workers that stopped heartbeating are still listed as gone.
const GONE_KEPT: usize = 100;

pub(super) struct Live {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn Source>,
    read_only: bool,
    poll: Duration,
    /// The latest snapshot, as the JSON text sent.
    snapshot: watch::Sender<Arc<str>>,
    /// Whether the poller runs; taken with subscribing, so a stream never
    /// waits on a poller that just stopped.
    running: Mutex<bool>,
    /// Every worker seen, and whether it is gone.
    seen: Mutex<BTreeMap<String, (WorkerInfo, bool)>>,
    polls: AtomicU64,
    /// How many pollers were started.
    spawns: AtomicU64,
    history: Mutex<History>,
}

/// Runs that ended in one minute, across every worker: counted by the
/// backend ([`Backend::minute_counts`](crate::Backend::minute_counts)), or
/// as the growth of its counters ([`QueueStats`](crate::backend::QueueStats))
/// between the poller's reads when it does not count per minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(super) struct Minute {
    /// The minute's start, seconds since the epoch.
    pub at: i64,
    /// Runs that ended (success, error, cancel or retry).
    pub finished: u64,
    /// Of those, runs that failed (error or retry).
    pub failed: u64,
    /// Per status, when the backend counted them.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<ByStatus>,
}

/// A minute's runs per status (see [`Minute`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(super) struct ByStatus {
    pub success: u64,
    pub error: u64,
    pub retry: u64,
    pub cancel: u64,
}

/// The 60 minutes up to `now`, oldest first, from the backend's counts
/// (zero where it counted nothing).
pub(super) fn series_of(counts: &[MinuteCount], now: f64) -> Vec<Minute> {
    let minute = MinuteCount::minute_of(now);
    (0..60)
        .map(|i| {
            let at = minute - (59 - i) * 60;
            let c = counts.iter().find(|c| c.at == at).copied().unwrap_or(MinuteCount { at, ..MinuteCount::default() });
            Minute {
                at,
                finished: c.ended(),
                failed: c.error + c.retry,
                statuses: Some(ByStatus { success: c.success, error: c.error, retry: c.retry, cancel: c.cancel }),
            }
        })
        .collect()
}

/// The last hour, per minute: the growth of the backend's counters between
/// the poller's reads, so it covers the time a browser was listening.
#[derive(Default)]
struct History {
    last: Option<(u64, u64)>,
    minutes: VecDeque<Minute>,
}

impl History {
    fn record(&mut self, now: f64, finished: u64, failed: u64) {
        let minute = (now / 60.0).floor() as i64 * 60;
        // Counters that went down (a flush) start over.
        let (df, de) = match self.last {
            Some((f, e)) if f <= finished && e <= failed => (finished - f, failed - e),
            _ => (0, 0),
        };
        self.last = Some((finished, failed));
        match self.minutes.back_mut() {
            Some(m) if m.at == minute => {
                m.finished += df;
                m.failed += de;
            }
            _ => self.minutes.push_back(Minute { at: minute, finished: df, failed: de, statuses: None }),
        }
        while self.minutes.front().is_some_and(|m| m.at <= minute - 3600) {
            self.minutes.pop_front();
        }
    }

    /// The 60 minutes up to `now`, oldest first (zero where nothing was read).
    fn series(&self, now: f64) -> Vec<Minute> {
        let minute = (now / 60.0).floor() as i64 * 60;
        (0..60)
            .map(|i| {
                let at = minute - (59 - i) * 60;
                self.minutes.iter().find(|m| m.at == at).copied().unwrap_or(Minute { at, ..Minute::default() })
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    pub(super) fn new(source: Arc<dyn Source>, read_only: bool, poll: Duration) -> Self {
        let (snapshot, _) = watch::channel(Arc::from(""));
        Self {
            inner: Arc::new(Inner {
                source,
                read_only,
                poll,
                snapshot,
                running: Mutex::new(false),
                seen: Mutex::new(BTreeMap::new()),
                polls: AtomicU64::new(0),
                spawns: AtomicU64::new(0),
                history: Mutex::new(History::default()),
            }),
        }
    }

    /// A receiver of the snapshots (the current one first, if any), with
    /// the poller started if it was not running.
    fn subscribe(&self) -> watch::Receiver<Arc<str>> {
        let mut running = lock(&self.inner.running);
        let mut rx = self.inner.snapshot.subscribe();
        if !rx.borrow().is_empty() {
            rx.mark_changed();
        }
        if !*running {
            *running = true;
            self.inner.spawns.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(poll(Arc::clone(&self.inner)));
        }
        rx
    }

    /// How many times a poller has read the backend, and how many
    /// pollers were started.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        (self.inner.polls.load(Ordering::Relaxed), self.inner.spawns.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    fn running(&self) -> bool {
        *lock(&self.inner.running)
    }

    /// The last hour's runs per minute, as far as the poller saw them.
    pub(super) fn throughput(&self) -> Vec<Minute> {
        lock(&self.inner.history).series(crate::model::now())
    }

    /// The live workers, and those seen before that are gone.
    pub(super) async fn workers(&self) -> Result<Vec<WorkerRow>, Error> {
        self.inner.workers().await
    }
}

impl Inner {
    async fn workers(&self) -> Result<Vec<WorkerRow>, Error> {
        let alive = self.source.workers().await?;
        let mut seen = lock(&self.seen);
        for (_, gone) in seen.values_mut() {
            *gone = true;
        }
        for w in alive {
            seen.insert(w.id.clone(), (w, false));
        }
        // Forget the oldest gone workers past the cap.
        let mut gone: Vec<(f64, String)> =
            seen.iter().filter(|(_, (_, g))| *g).map(|(id, (w, _))| (w.started_at, id.clone())).collect();
        if gone.len() > GONE_KEPT {
            gone.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, id) in &gone[..gone.len() - GONE_KEPT] {
                seen.remove(id);
            }
        }
        Ok(seen
            .values()
            .map(|(w, gone)| WorkerRow { info: w.clone(), state: if *gone { "gone" } else { "alive" } })
            .collect())
    }

    /// The snapshot as read now (its time, `at`, left out).
    async fn snapshot(&self) -> serde_json::Value {
        let read = async {
            let mut overview = read_overview(&*self.source, self.read_only).await?;
            let s = &overview.statuses;
            let get = |k: &str| s.get(k).copied().unwrap_or(0);
            let now = crate::model::now();
            let finished = get("success") + get("error") + get("cancel") + get("retry");
            let series = {
                let mut history = lock(&self.history);
                history.record(now, finished, get("error") + get("retry"));
                history.series(now)
            };
            if overview.counted_by == super::api::COUNTED_HERE {
                overview.throughput = series;
            }
            let recent = self.source.list(TaskQuery::newest(RECENT)).await?;
            let workers = self.workers().await?;
            Ok::<_, Error>(json!({ "overview": overview, "recent": recent.tasks, "workers": workers }))
        };
        match read.await {
            Ok(v) => v,
            Err(e) => json!({ "error": super::api::status_of(&e).1 }),
        }
    }
}

async fn poll(inner: Arc<Inner>) {
    let mut last = serde_json::Value::Null;
    loop {
        {
            let mut running = lock(&inner.running);
            if inner.snapshot.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        // When the read started: a page rendered later ignores it (it may
        // be older than what the page shows).
        let at = crate::model::now();
        let next = inner.snapshot().await;
        inner.polls.fetch_add(1, Ordering::Relaxed);
        if next != last {
            let mut sent = next.clone();
            if let Some(map) = sent.as_object_mut() {
                map.insert("at".to_owned(), json!(at));
            }
            inner.snapshot.send_replace(Arc::from(sent.to_string()));
            last = next;
        }
        tokio::time::sleep(inner.poll).await;
    }
}

/// `GET /api/events`: the snapshots, as server-sent events named `snapshot`.
pub(super) async fn events(State(state): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let data = rx.borrow_and_update().clone();
        Some((Ok(Event::default().event("snapshot").data(&*data)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueueTasks;

    #[test]
    fn history_counts_the_growth_per_minute_for_an_hour() {
        let mut h = History::default();
        let t0 = 1_000_020.0; // 16 667 minutes and 0 s
        h.record(t0, 10, 1); // the first read sets the base
        h.record(t0 + 5.0, 14, 2);
        h.record(t0 + 61.0, 20, 2);
        h.record(t0 + 62.0, 3, 0); // a flush: starts over
        h.record(t0 + 63.0, 5, 1);
        let series = h.series(t0 + 63.0);
        assert_eq!(series.len(), 60);
        assert_eq!(series[58], Minute { at: 1_000_020, finished: 4, failed: 1, statuses: None });
        assert_eq!(series[59], Minute { at: 1_000_080, finished: 8, failed: 1, statuses: None });
        h.record(t0 + 3700.0, 6, 1);
        assert!(h.series(t0 + 3700.0).iter().all(|m| m.at > 1_000_080), "older than an hour: dropped");
    }

    #[test]
    fn the_backends_counts_fill_an_hour_of_minutes() {
        let now = 1_000_030.0; // 30 s into the minute starting at 1 000 020
        let counts = [
            MinuteCount { at: 1_000_020 - 59 * 60, success: 1, ..MinuteCount::default() },
            MinuteCount { at: 1_000_020, success: 2, error: 1, retry: 1, cancel: 1 },
        ];
        let series = series_of(&counts, now);
        assert_eq!(series.len(), 60);
        assert_eq!((series[0].at, series[0].finished, series[0].failed), (1_000_020 - 59 * 60, 1, 0));
        assert!(series[1..59].iter().all(|m| m.finished == 0), "quiet minutes are zero");
        let last = series[59];
        assert_eq!((last.at, last.finished, last.failed), (1_000_020, 5, 2));
        assert_eq!(last.statuses, Some(ByStatus { success: 2, error: 1, retry: 1, cancel: 1 }));
    }

    #[tokio::test]
    async fn one_poller_serves_every_stream_and_stops_without_them() {
        let app = QueueTasks::builder("live-one-poller").build().unwrap();
        let live = Live::new(Arc::new(app), false, Duration::from_millis(20));
        let mut streams: Vec<_> = (0..5).map(|_| live.subscribe()).collect();
        for rx in &mut streams {
            rx.changed().await.unwrap();
            assert!(rx.borrow_and_update().contains("\"overview\""));
        }
        assert_eq!(live.counts().1, 1, "five streams, one poller");
        assert!(live.counts().0 >= 1);
        drop(streams);
        // Hang protection only: the poller stops at its next tick.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while live.running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!live.running(), "the poller stops once no stream listens");
        let mut again = live.subscribe();
        again.changed().await.unwrap();
        assert_eq!(live.counts().1, 2);
    }
}
