//! Named queues and the limits that hold across every worker.
//!
//! Every task goes to a queue: the one its `#[task(queue = "…")]` names,
//! else [`DEFAULT_QUEUE`]; an enqueue may name another
//! ([`Signature::queue`](crate::Signature::queue)). A worker takes from the
//! queues it is given ([`WorkerBuilder::queues`](crate::WorkerBuilder::queues)),
//! and within a queue by priority (lower first), then in enqueue order.
//!
//! Limits are kept by the backend, so they hold for every worker on every
//! host, and a task over a limit simply stays queued (it is not dropped,
//! not taken and put back, and not counted as a retry):
//!
//! - **concurrency**: at most N tasks of a task name
//!   (`#[task(concurrency = 3)]`) or of a queue ([`Queue::concurrency`])
//!   running at once, and at most N per value of one argument
//!   (`#[task(concurrency_key = user_id)]`, one by default, or
//!   `key_concurrency = N`). A running task holds its slot under its lease,
//!   so the slots of a worker that died come back when its lease expires;
//! - **rate**: at most N starts per second, minute or hour of a task name
//!   (`#[task(rate = "100/s")]`) or a queue ([`Queue::rate`]): a token bucket
//!   holding one second's (minute's, hour's) worth of tokens, so a burst of
//!   up to N may start at once after a quiet spell, then N per period.
//!   Workers waiting for a token sleep until it is due; they do not poll.
//!
//! A queue can be paused and resumed ([`QueueTasks::pause_queue`](crate::QueueTasks::pause_queue)):
//! the flag lives in the backend and is read in the same atomic step that
//! takes tasks, so no worker takes from the queue once it is paused; tasks
//! already running finish, and enqueueing still works.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use crate::model::DEFAULT_QUEUE;

/// A rate: at most `count` starts per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Starts allowed per period (at least 1).
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl Rate {
    /// `count` per second.
    pub const fn per_second(count: u32) -> Self {
        Self { count, per: Duration::from_secs(1) }
    }

    /// `count` per minute.
    pub const fn per_minute(count: u32) -> Self {
        Self { count, per: Duration::from_secs(60) }
    }

    /// `count` per hour.
    pub const fn per_hour(count: u32) -> Self {
        Self { count, per: Duration::from_secs(3600) }
    }

    /// The time one token takes to come back.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A rate or limit that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate `{0}`: expected a whole number ≥ 1, a slash and s, m or h, e.g. 100/s, 30/m or 5/h")]
pub struct InvalidRate(pub String);

impl FromStr for Rate {
    type Err = InvalidRate;

    /// `100/s`, `30/m`, `5/h` (also `/sec`, `/min`, `/hour`, spaces allowed).
    fn from_str(text: &str) -> Result<Self, InvalidRate> {
        let invalid = || InvalidRate(text.to_owned());
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 {
            return Err(invalid());
        }
        match unit.trim() {
            "s" | "sec" | "second" => Ok(Self::per_second(count)),
            "m" | "min" | "minute" => Ok(Self::per_minute(count)),
            "h" | "hour" => Ok(Self::per_hour(count)),
            _ => Err(invalid()),
        }
    }
}

/// The limits of one task name or one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// Most tasks running at once, across every worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Most starts per period, across every worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Most tasks running at once per concurrency key (the value of the
    /// argument `#[task(concurrency_key = …)]` names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<u32>,
}

impl Limit {
    /// `true` if nothing is limited.
    pub fn is_none(&self) -> bool {
        self.concurrency.is_none() && self.rate.is_none() && self.per_key.is_none()
    }
}

/// `concurrency 3, rate 100/s, 1 per key`, or `none`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.concurrency {
            parts.push(format!("concurrency {n}"));
        }
        if let Some(rate) = &self.rate {
            parts.push(format!("rate {rate}"));
        }
        if let Some(n) = self.per_key {
            parts.push(format!("{n} per key"));
        }
        if parts.is_empty() { f.write_str("none") } else { f.write_str(&parts.join(", ")) }
    }
}

/// A queue's settings: its name and its limits. Given to the app with
/// [`Builder::queue`](crate::Builder::queue).
///
/// ```
/// use qtasks::{Queue, QueueTasks};
///
/// let app = QueueTasks::builder("demo")
///     .queue(Queue::new("emails").concurrency(5).rate("100/m")?)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    name: String,
    limit: Limit,
}

impl Queue {
    /// A queue with no limit.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), limit: Limit::default() }
    }

    /// At most `n` of its tasks running at once, across every worker (at least 1).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.limit.concurrency = Some(n.max(1));
        self
    }

    /// At most so many of its tasks started per period, across every worker:
    /// `"100/s"`, `"30/m"`, `"5/h"`.
    pub fn rate(mut self, rate: &str) -> Result<Self, InvalidRate> {
        self.limit.rate = Some(rate.parse()?);
        Ok(self)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limit(&self) -> Limit {
        self.limit
    }
}

/// The limits a worker asks the backend to hold when it fetches: per task
/// name and per queue (only the limited ones are listed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Per task name.
    pub tasks: std::collections::BTreeMap<String, Limit>,
    /// Per queue.
    pub queues: std::collections::BTreeMap<String, Limit>,
}

impl Limits {
    /// `true` if nothing is limited: fetching needs no bookkeeping.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.queues.is_empty()
    }

    /// The limit of task `name`, if any.
    pub fn task(&self, name: &str) -> Option<&Limit> {
        self.tasks.get(name)
    }

    /// The limit of queue `name`, if any.
    pub fn queue(&self, name: &str) -> Option<&Limit> {
        self.queues.get(name)
    }
}

/// What the backend knows of a queue, across every worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Tasks waiting to run now.
    pub depth: u64,
    /// Tasks waiting for a later time (a countdown, an ETA, a retry backoff).
    pub delayed: u64,
    /// Tasks taken by a worker and not finished.
    pub in_flight: u64,
    /// Whether workers take from it.
    pub paused: bool,
    /// How long the oldest task waiting now has waited.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub oldest_age: Option<Duration>,
    /// Its limits, as this app declares them.
    pub limit: Limit,
}

/// How a worker orders its queues at each fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOrder {
    /// Always the first queue first: a later queue gets tasks only while
    /// every queue before it is empty, paused or at its limits. Celery and
    /// Sidekiq's strict mode; a busy first queue starves the others.
    Strict(Vec<String>),
    /// Each fetch starts at a queue picked by weight (smooth weighted round
    /// robin: with weights 3 and 1 the first queue starts three fetches in
    /// four), then falls through the others in order, so no queue starves
    /// and an idle one costs nothing. Sidekiq's weighted mode.
    Weighted(Vec<(String, u32)>),
}

impl QueueOrder {
    /// The queues, in declared order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Strict(names) => names.iter().map(String::as_str).collect(),
            Self::Weighted(weights) => weights.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }
}

/// `critical, default` (strict) or `critical=6, default=1` (weighted).
impl fmt::Display for QueueOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = match self {
            Self::Strict(names) => names.clone(),
            Self::Weighted(weights) => weights.iter().map(|(n, w)| format!("{n}={w}")).collect(),
        };
        f.write_str(&parts.join(", "))
    }
}

/// A queue list that does not parse (see [`QueueOrder`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid queue list `{0}`: expected names separated by commas (`critical,default`, strict order) or \
     every name with a weight ≥ 1 (`critical=6,default=1`, weighted)"
)]
pub struct InvalidQueueOrder(pub String);

impl FromStr for QueueOrder {
    type Err = InvalidQueueOrder;

    /// `critical,default` is strict order; `critical=6,default=1` weighted
    /// (every queue then needs a weight). Spaces around names are ignored;
    /// an empty name, a repeated name or a weight of 0 is an error.
    fn from_str(text: &str) -> Result<Self, InvalidQueueOrder> {
        let invalid = || InvalidQueueOrder(text.to_owned());
        let parts: Vec<(&str, Option<&str>)> = text
            .split(',')
            .map(|part| match part.split_once('=') {
                Some((name, weight)) => (name.trim(), Some(weight.trim())),
                None => (part.trim(), None),
            })
            .collect();
        for (i, (name, _)) in parts.iter().enumerate() {
            if name.is_empty() || parts[..i].iter().any(|(other, _)| other == name) {
                return Err(invalid());
            }
        }
        let names = || parts.iter().map(|(name, _)| (*name).to_owned());
        match (parts.iter().all(|(_, w)| w.is_none()), parts.iter().all(|(_, w)| w.is_some())) {
            (true, _) => Ok(Self::Strict(names().collect())),
            (_, true) => {
                let weights = parts
                    .iter()
                    .map(|(_, w)| w.and_then(|w| w.parse::<u32>().ok()).filter(|w| *w >= 1).ok_or_else(invalid))
                    .collect::<Result<Vec<u32>, _>>()?;
                Ok(Self::Weighted(names().zip(weights).collect()))
            }
            _ => Err(invalid()),
        }
    }
}

/// Turns a [`QueueOrder`] into the order of each fetch.
#[derive(Debug)]
pub(crate) struct Rotation {
    names: Vec<String>,
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl Rotation {
    pub(crate) fn new(order: &QueueOrder) -> Self {
        let (names, weights): (Vec<String>, Vec<i64>) = match order {
            QueueOrder::Strict(names) => (names.clone(), Vec::new()),
            QueueOrder::Weighted(weights) => weights.iter().map(|(n, w)| (n.clone(), i64::from((*w).max(1)))).unzip(),
        };
        let current = vec![0; weights.len()];
        Self { names, weights, current }
    }

    /// The order of the next fetch: strict order as given; weighted, the
    /// queue picked by smooth weighted round robin first, then the others
    /// in declared order.
    pub(crate) fn next(&mut self) -> Vec<String> {
        if self.weights.is_empty() || self.names.len() < 2 {
            return self.names.clone();
        }
        let total: i64 = self.weights.iter().sum();
        for (c, w) in self.current.iter_mut().zip(&self.weights) {
            *c += w;
        }
        let (first, _) = self.current.iter().enumerate().max_by_key(|(i, c)| (**c, -(*i as i64))).unwrap_or((0, &0));
        self.current[first] -= total;
        let mut order = Vec::with_capacity(self.names.len());
        order.push(self.names[first].clone());
        order.extend(self.names.iter().enumerate().filter(|(i, _)| *i != first).map(|(_, n)| n.clone()));
        order
    }
}

/// The concurrency key or unique key of a task: the JSON value of one
/// argument (positional `args[i]` or `args[name]`), as text (a string as
/// itself, anything else as JSON).
pub(crate) fn argument_key(args: &serde_json::Value, params: &[&str], param: &str) -> Option<String> {
    let value = match args {
        serde_json::Value::Array(items) => items.get(params.iter().position(|p| *p == param)?)?,
        serde_json::Value::Object(map) => map.get(param)?,
        other if params.len() == 1 && params[0] == param => other,
        _ => return None,
    };
    Some(match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("100/s".parse(), Ok(Rate::per_second(100)));
        assert_eq!(" 30 / m ".parse(), Ok(Rate::per_minute(30)));
        assert_eq!("5/hour".parse(), Ok(Rate::per_hour(5)));
        for bad in ["", "100", "0/s", "-1/s", "10/d", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(Rate::per_minute(30).to_string(), "30/m");
        assert_eq!(Rate::per_second(4).interval(), Duration::from_millis(250));
    }

    #[test]
    fn queue_lists_parse_and_print() {
        let strict: QueueOrder = "critical, default".parse().unwrap();
        assert_eq!(strict, QueueOrder::Strict(vec!["critical".into(), "default".into()]));
        assert_eq!(strict.to_string(), "critical, default");
        let weighted: QueueOrder = "critical=6,default=1".parse().unwrap();
        assert_eq!(weighted, QueueOrder::Weighted(vec![("critical".into(), 6), ("default".into(), 1)]));
        assert_eq!(weighted.to_string(), "critical=6, default=1");
        for bad in ["", "a,", "a,a", "a=0", "a=x", "a=2,b", "=3"] {
            assert_eq!(bad.parse::<QueueOrder>(), Err(InvalidQueueOrder(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn weighted_rotation_follows_the_weights_and_falls_through() {
        let mut r = Rotation::new(&QueueOrder::Weighted(vec![("a".into(), 3), ("b".into(), 1)]));
        let firsts: Vec<String> = (0..8).map(|_| r.next()[0].clone()).collect();
        assert_eq!(firsts.iter().filter(|q| *q == "a").count(), 6);
        assert_eq!(r.next().len(), 2, "every queue is in each order");
        let mut strict = Rotation::new(&QueueOrder::Strict(vec!["a".into(), "b".into()]));
        assert_eq!(strict.next(), ["a", "b"]);
    }

    #[test]
    fn argument_keys_come_by_position_or_by_name() {
        let params = ["user_id", "body"];
        assert_eq!(argument_key(&serde_json::json!([7, "x"]), &params, "user_id").as_deref(), Some("7"));
        assert_eq!(argument_key(&serde_json::json!({"user_id": "ada"}), &params, "user_id").as_deref(), Some("ada"));
        assert_eq!(argument_key(&serde_json::json!([]), &params, "user_id"), None);
    }
}
