//! Chains and groups: several tasks run as one unit, as in QTasks and Celery.
//!
//! - A [`Signature`] is a task call not yet made: a task name, its arguments
//!   and options ([`call`], [`Signature::of`]).
//! - A chain ([`QueueTasks::chain`](crate::QueueTasks::chain)) runs its steps one after another:
//!   each step's result is appended as the **last positional argument** of
//!   the next step, so `add(2, 2) → add(4) → add(8)` gives `[4, 8, 16]`.
//! - A group ([`QueueTasks::group`](crate::QueueTasks::group)) enqueues its members at once and gathers
//!   every result, in the order given, whatever order they finish in.
//!
//! Both are driven by the caller: the client enqueues a chain's next step
//! when the previous one has finished, and waits for a group's members. If
//! the caller goes away (the future is dropped, the process exits), a chain
//! stops: the step running finishes on its worker, the later steps are never
//! enqueued. Group members already enqueued run regardless.
//!
//! ```
//! use qtasks::{QueueTasks, Signature, call, json, task};
//! use std::time::Duration;
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("canvas-doc").task::<Add>().build()?;
//! let worker = app.worker().start().await?;
//! let timeout = Duration::from_secs(5);
//!
//! // A chain: each result becomes the last argument of the next step.
//! let steps = [Add::call(2, 2).untyped(), call("add", json!([4])), call("add", json!([8]))];
//! let sums: Vec<i64> = app.chain(steps).results(timeout).await?;
//! assert_eq!(sums, [4, 8, 16]);
//!
//! // A group: every member at once, results in the order given.
//! let members = [(2, 3), (3, 4), (4, 5), (6, 7)].map(|args| Signature::of::<Add>(args).untyped());
//! let records = app.group(members).run(timeout).await?;
//! let sums: Vec<_> = records.iter().map(|r| r.result.clone()).collect();
//! assert_eq!(sums, [Some(json!(5)), Some(json!(7)), Some(json!(9)), Some(json!(13))]);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```

use super::Client;
use crate::app::{Error, WaitError};
use crate::model::{Name, TaskRecord, TaskStatus};
use crate::task::Task;
use futures::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A task call not yet made: a task name, its arguments, and options
/// (priority, extra fields). `O` is the result's type: the task's output
/// for a typed call ([`Signature::of`]), [`Value`] for a call by name
/// ([`call`]).
///
/// A signature is what [`QueueTasks::enqueue`](crate::QueueTasks::enqueue) enqueues, and what the
/// steps of chains and the members of groups are. Arguments are encoded to
/// JSON when the signature is built; an encoding failure is reported when
/// it is enqueued, before anything reaches the backend.
pub struct Signature<O = Value> {
    task_name: Name,
    args: Result<Value, Arc<serde_json::Error>>,
    options: Options,
    _output: PhantomData<fn() -> O>,
}

/// What a call sets besides its task and arguments; `None`: the task's own
/// setting (or the app's default).
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) priority: Option<i64>,
    pub(crate) queue: Option<Name>,
    pub(crate) extra: Map<String, Value>,
    pub(crate) id: Option<Uuid>,
    pub(crate) unique_key: Option<String>,
    pub(crate) delay: Option<Duration>,
}

/// A call ready to be resolved by the app: its task's settings fill in
/// what the call leaves open.
#[derive(Debug)]
pub(crate) struct Submit {
    pub(crate) task_name: Name,
    pub(crate) args: Value,
    pub(crate) options: Options,
}

/// A call of the task `task_name` with JSON-serializable arguments: an
/// array or tuple (positional), a map (by parameter name), a bare value for
/// a task of one parameter, or `()` for none. The by-name form, for tasks
/// this process may not define (QTasks's `add_task`).
///
/// In a chain, every step after the first receives the previous step's
/// result as an extra last positional argument, so its arguments must be an
/// array (or `null`/`()` for none).
pub fn call(task_name: impl Into<Name>, args: impl Serialize) -> Signature {
    Signature::by_name(task_name, args)
}

impl Signature {
    /// Same as [`call`].
    pub fn by_name(task_name: impl Into<Name>, args: impl Serialize) -> Self {
        Self {
            task_name: task_name.into(),
            args: serde_json::to_value(args).map_err(Arc::new),
            options: Options::default(),
            _output: PhantomData,
        }
    }
}

impl<O> Signature<O> {
    /// A call of the typed task `K` with all its arguments (a tuple in
    /// parameter order). `#[task]` generates the same call with the
    /// function's own parameters, which reads better: `Add::call(2, 3)`.
    pub fn of<K: Task<Output = O>>(args: K::Args) -> Self {
        Signature::by_name(Name::new_static(K::INFO.name), args).typed()
    }

    /// The same call with its result read as `U` (for example a typed view
    /// of a call made by name).
    pub fn typed<U>(self) -> Signature<U> {
        Signature { task_name: self.task_name, args: self.args, options: self.options, _output: PhantomData }
    }

    /// The same call with its result read as JSON, so calls of different
    /// tasks fit in one chain or group.
    pub fn untyped(self) -> Signature {
        self.typed()
    }

    /// Overrides the task's priority (lower runs first); by default the
    /// priority the task declares, else the app's
    /// [`task_default_priority`](crate::Config::task_default_priority).
    pub fn priority(mut self, priority: i64) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// Sends the task to queue `queue` instead of the one its
    /// `#[task(queue = …)]` names (or the default queue).
    pub fn queue(mut self, queue: impl Into<Name>) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// Runs the task no sooner than `delay` from now (a countdown). The task
    /// waits in the backend, not in a worker's memory, and shows as delayed
    /// in [`queues`](crate::QueueTasks::queues).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.options.delay = Some(delay);
        self
    }

    /// Runs the task no sooner than `at` (an ETA); a time in the past runs
    /// it as soon as possible.
    pub fn at(self, at: std::time::SystemTime) -> Self {
        let delay = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        self.delay(delay)
    }

    /// Gives this task its own time limit, in place of its
    /// `#[task(max_time = …)]` (longer or shorter): past it the run ends
    /// `error` (`time limit exceeded`), as with the declared limit. Stored
    /// as the task's extra field [`MAX_TIME`](crate::task::MAX_TIME) (in
    /// seconds), so retries of the task keep it. A limit of zero fails the
    /// run, saying so.
    pub fn max_time(self, limit: Duration) -> Self {
        self.extra(crate::task::MAX_TIME, limit.as_secs_f64())
    }

    /// Gives the task this unique key, whatever its `#[task(unique…)]`
    /// options: while a task of the same name and key is queued or running
    /// (and for the task's `unique_for` window after it ends, 0 s unless it
    /// declares one), enqueueing gives that task instead of a new one.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.options.unique_key = Some(key.into());
        self
    }

    /// Adds an extra field, stored with the task's record and visible to
    /// the task as [`TaskContext::extra`](crate::TaskContext::extra).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.options.extra.insert(key.into(), value.into());
        self
    }

    /// Sends the task with this W3C trace context (a `traceparent` header's
    /// value, `00-<trace id>-<span id>-<flags>`), so the worker's span for
    /// it joins that trace: the one way to carry a trace without the
    /// `opentelemetry` feature, and a traceparent that wins over the
    /// current span's with it. Stored as the task's extra field
    /// [`traceparent`](crate::trace::TRACEPARENT); a value that is not a W3C
    /// traceparent fails the enqueue with
    /// [`Error::InvalidTraceparent`]. See [`trace`](crate::trace).
    pub fn traceparent(self, traceparent: impl Into<String>) -> Self {
        self.extra(crate::trace::TRACEPARENT, traceparent.into())
    }

    /// Sends the W3C `tracestate` (vendor entries) that goes with the
    /// [`traceparent`](Self::traceparent); ignored without one.
    pub fn tracestate(self, tracestate: impl Into<String>) -> Self {
        self.extra(crate::trace::TRACESTATE, tracestate.into())
    }

    /// Enqueues the task under this id instead of a fresh one, so the
    /// enqueue is idempotent: if a task with this id exists, enqueueing does
    /// nothing and the handle points at that task. Use it to retry an
    /// enqueue whose outcome is unknown (the connection dropped before the
    /// answer) without making a second task.
    pub fn id(mut self, id: Uuid) -> Self {
        self.options.id = Some(id);
        self
    }

    /// The task's name.
    pub fn task_name(&self) -> &str {
        &self.task_name
    }

    /// The arguments as JSON; `None` if they could not be encoded.
    pub fn args(&self) -> Option<&Value> {
        self.args.as_ref().ok()
    }

    /// The call to submit, with `args` in place of the signature's own.
    fn submit_with(&self, args: Value) -> Submit {
        Submit { task_name: self.task_name.clone(), args, options: self.options.clone() }
    }

    /// The call to submit, or the encoding error of the arguments.
    pub(crate) fn into_submit(self) -> Result<Submit, Error> {
        let args = self.args.map_err(|source| Error::EncodeArgs { task: self.task_name.to_string(), source })?;
        Ok(Submit { task_name: self.task_name, args, options: self.options })
    }

    /// The arguments, or why they are unusable: `append` asks for an array
    /// (or `null`) the previous result can be appended to.
    fn checked_args(&self, append: bool) -> Result<&Value, String> {
        let args = self.args.as_ref().map_err(|e| format!("could not encode the arguments as JSON: {e}"))?;
        if append && !matches!(args, Value::Array(_) | Value::Null) {
            return Err(format!(
                "the previous step's result is appended to the positional arguments, so they must be a JSON \
                 array, not {args}"
            ));
        }
        Ok(args)
    }
}

impl<O> Clone for Signature<O> {
    fn clone(&self) -> Self {
        Self {
            task_name: self.task_name.clone(),
            args: self.args.clone(),
            options: self.options.clone(),
            _output: PhantomData,
        }
    }
}

impl<O> fmt::Debug for Signature<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("task_name", &self.task_name)
            .field("args", &self.args)
            .field("options", &self.options)
            .finish()
    }
}

/// Waits for a step or member: its final record, `None` at the timeout.
async fn wait_step(client: &Client, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, Error> {
    match client.wait(uuid, timeout).await {
        Ok(record) => Ok(Some(record)),
        Err(WaitError::Timeout) => Ok(None),
        Err(WaitError::Backend(e)) => Err(Error::Backend(e)),
        Err(other) => unreachable!("waiting for a record gives a record, a timeout or a backend error, not {other}"),
    }
}

/// The instant `timeout` from now, or `None` if that is too far to represent.
fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// What is left of `timeout` before `deadline`.
fn remaining(deadline: Option<Instant>, timeout: Duration) -> Duration {
    deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()))
}

impl Client {
    /// A chain of `steps`, run one after another by [`TaskChain::run`]:
    /// each step's result is appended as the last positional argument of the
    /// next step. See the [module docs](self).
    pub fn chain(&self, steps: impl IntoIterator<Item = Signature>) -> TaskChain {
        TaskChain { client: self.clone(), steps: steps.into_iter().collect() }
    }

    /// A group of `members`, enqueued at once by [`TaskGroup::run`], whose
    /// results are gathered in the order given.
    pub fn group(&self, members: impl IntoIterator<Item = Signature>) -> TaskGroup {
        TaskGroup { client: self.clone(), members: members.into_iter().collect() }
    }
}

/// Tasks run one after another, each receiving the previous result; made by
/// [`QueueTasks::chain`](crate::QueueTasks::chain).
///
/// The chain is driven by the caller of [`run`](TaskChain::run): it
/// enqueues step `n + 1` once step `n` has finished. If that future is
/// dropped, the later steps are never enqueued.
#[must_use = "a chain runs only when `.run(timeout)` is awaited"]
pub struct TaskChain {
    client: Client,
    steps: Vec<Signature>,
}

impl TaskChain {
    /// The steps, in order.
    pub fn steps(&self) -> &[Signature] {
        &self.steps
    }

    /// Runs the chain and returns every step's final record, in order.
    ///
    /// `timeout` bounds the whole chain. Every step's arguments are checked
    /// first (encodable; an array or `null` for steps after the first):
    /// nothing is enqueued if one is not. The chain stops at the first step
    /// that does not end `success`, and the error holds the records of the
    /// steps that ran. An empty chain gives no records.
    pub async fn run(&self, timeout: Duration) -> Result<Vec<TaskRecord>, ChainError> {
        let deadline = deadline(timeout);
        let mut steps = Vec::with_capacity(self.steps.len());
        for (index, step) in self.steps.iter().enumerate() {
            let args = step.checked_args(index > 0).map_err(|reason| ChainError::InvalidArgs {
                index,
                task_name: step.task_name.to_string(),
                reason,
            })?;
            steps.push(args);
        }

        let mut records: Vec<TaskRecord> = Vec::with_capacity(steps.len());
        for (index, (step, args)) in self.steps.iter().zip(steps).enumerate() {
            let task_name = step.task_name.to_string();
            let args = match records.last() {
                None => args.clone(),
                Some(previous) => {
                    let mut args = args.as_array().cloned().unwrap_or_default();
                    args.push(previous.result.clone().unwrap_or(Value::Null));
                    Value::Array(args)
                }
            };
            let uuid = match self.client.submit(step.submit_with(args)).await {
                Ok(uuid) => uuid,
                Err(source) => return Err(ChainError::Backend { index, task_name, uuid: None, source, records }),
            };
            let record = match wait_step(&self.client, uuid, remaining(deadline, timeout)).await {
                Ok(Some(record)) => record,
                Ok(None) => return Err(ChainError::Timeout { index, task_name, uuid, records }),
                Err(source) => {
                    return Err(ChainError::Backend { index, task_name, uuid: Some(uuid), source, records });
                }
            };
            let (status, error) = (record.status, record.error.clone());
            records.push(record);
            if status != TaskStatus::Success {
                return Err(ChainError::StepFailed { index, task_name, uuid, status, error, records });
            }
        }
        Ok(records)
    }

    /// Runs the chain like [`run`](TaskChain::run) and decodes every step's
    /// result into `O` (e.g. `i64`, or [`Value`] for steps of mixed types).
    pub async fn results<O: DeserializeOwned>(&self, timeout: Duration) -> Result<Vec<O>, ChainError> {
        let records = self.run(timeout).await?;
        match decode_all(&records) {
            Ok(results) => Ok(results),
            Err((index, source)) => {
                let (task_name, uuid) = (records[index].task_name.to_string(), records[index].uuid);
                Err(ChainError::Decode { index, task_name, uuid, source, records })
            }
        }
    }
}

/// Decodes every record's result, or gives the first index that fails.
fn decode_all<O: DeserializeOwned>(records: &[TaskRecord]) -> Result<Vec<O>, (usize, serde_json::Error)> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| serde_json::from_value(r.result.clone().unwrap_or(Value::Null)).map_err(|e| (i, e)))
        .collect()
}

/// Why a chain did not give every step's result.
///
/// Every variant but [`InvalidArgs`](ChainError::InvalidArgs) carries the
/// final records of the steps that ran ([`records`](ChainError::records)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A step's arguments are unusable; nothing was enqueued.
    #[error("chain step {index} (`{task_name}`): {reason}; nothing was enqueued")]
    InvalidArgs {
        /// The step's index, from 0.
        index: usize,
        /// The step's task.
        task_name: String,
        /// What is wrong with its arguments.
        reason: String,
    },
    /// A step ended without success (`error` or `cancel`); the later steps
    /// were not enqueued.
    #[error("chain step {index} (`{task_name}`, {uuid}) ended `{status}`{}", describe_error(.error))]
    StepFailed {
        /// The step's index, from 0.
        index: usize,
        /// The step's task.
        task_name: String,
        /// The id the step was enqueued with.
        uuid: Uuid,
        /// How it ended.
        status: TaskStatus,
        /// Why, as the task reported it.
        error: Option<String>,
        /// The final records of the steps that ran, the failed one last.
        records: Vec<TaskRecord>,
    },
    /// The timeout passed while a step was unfinished; it may still finish,
    /// but the later steps will not be enqueued.
    #[error("chain timed out: step {index} (`{task_name}`, {uuid}) did not finish in time")]
    Timeout {
        /// The unfinished step's index, from 0.
        index: usize,
        /// The unfinished step's task.
        task_name: String,
        /// The unfinished step's id.
        uuid: Uuid,
        /// The final records of the steps that finished before it.
        records: Vec<TaskRecord>,
    },
    /// Enqueueing or waiting for a step failed on the backend.
    #[error("chain step {index} (`{task_name}`): {source}")]
    Backend {
        /// The step's index, from 0.
        index: usize,
        /// The step's task.
        task_name: String,
        /// The step's id, if it was enqueued.
        uuid: Option<Uuid>,
        /// What failed.
        #[source]
        source: Error,
        /// The final records of the steps that finished before it.
        records: Vec<TaskRecord>,
    },
    /// Every step succeeded but a result did not decode into the type asked
    /// for ([`TaskChain::results`]).
    #[error("chain step {index} (`{task_name}`, {uuid}): could not decode the result: {source}")]
    Decode {
        /// The step's index, from 0.
        index: usize,
        /// The step's task.
        task_name: String,
        /// The step's id.
        uuid: Uuid,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
        /// Every step's final record.
        records: Vec<TaskRecord>,
    },
}

impl ChainError {
    /// The index of the step the error is about.
    pub fn index(&self) -> usize {
        match self {
            Self::InvalidArgs { index, .. }
            | Self::StepFailed { index, .. }
            | Self::Timeout { index, .. }
            | Self::Backend { index, .. }
            | Self::Decode { index, .. } => *index,
        }
    }

    /// The final records of the steps that ran, in order (none for
    /// [`InvalidArgs`](ChainError::InvalidArgs)).
    pub fn records(&self) -> &[TaskRecord] {
        match self {
            Self::InvalidArgs { .. } => &[],
            Self::StepFailed { records, .. }
            | Self::Timeout { records, .. }
            | Self::Backend { records, .. }
            | Self::Decode { records, .. } => records,
        }
    }

    /// Takes the records out; see [`records`](ChainError::records).
    pub fn into_records(self) -> Vec<TaskRecord> {
        match self {
            Self::InvalidArgs { .. } => Vec::new(),
            Self::StepFailed { records, .. }
            | Self::Timeout { records, .. }
            | Self::Backend { records, .. }
            | Self::Decode { records, .. } => records,
        }
    }
}

fn describe_error(error: &Option<String>) -> String {
    error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
}

/// Tasks enqueued at once whose results are gathered in the order given;
/// made by [`QueueTasks::group`](crate::QueueTasks::group).
#[must_use = "a group runs only when `.run(timeout)` is awaited"]
pub struct TaskGroup {
    client: Client,
    members: Vec<Signature>,
}

impl TaskGroup {
    /// The members, in order.
    pub fn members(&self) -> &[Signature] {
        &self.members
    }

    /// Enqueues every member concurrently, waits for all of them and
    /// returns their final records in the order given.
    ///
    /// `timeout` bounds the whole wait. Every member's arguments are
    /// encoded first: nothing is enqueued if one fails. If a member does not
    /// end `success` (or is unfinished at the timeout), the error reports
    /// every member: its record or what went wrong with it.
    pub async fn run(&self, timeout: Duration) -> Result<Vec<TaskRecord>, GroupError> {
        let deadline = deadline(timeout);
        let mut args = Vec::with_capacity(self.members.len());
        for (index, member) in self.members.iter().enumerate() {
            let checked = member.checked_args(false).map_err(|reason| GroupError::InvalidArgs {
                index,
                task_name: member.task_name.to_string(),
                reason,
            })?;
            args.push(checked);
        }

        let client = &self.client;
        let outcomes = join_all(self.members.iter().zip(args).enumerate().map(|(index, (member, args))| async move {
            let task_name = || member.task_name.to_string();
            let uuid = match client.submit(member.submit_with(args.clone())).await {
                Ok(uuid) => uuid,
                Err(source) => return Err(MemberError::Backend { index, task_name: task_name(), uuid: None, source }),
            };
            match wait_step(client, uuid, remaining(deadline, timeout)).await {
                Ok(Some(record)) if record.status == TaskStatus::Success => Ok(record),
                Ok(Some(record)) => Err(MemberError::Failed { index, uuid, record: Box::new(record) }),
                Ok(None) => Err(MemberError::Unfinished { index, task_name: task_name(), uuid }),
                Err(source) => Err(MemberError::Backend { index, task_name: task_name(), uuid: Some(uuid), source }),
            }
        }))
        .await;

        if outcomes.iter().all(Result::is_ok) {
            Ok(outcomes.into_iter().flatten().collect())
        } else {
            Err(GroupError::Incomplete { members: outcomes })
        }
    }

    /// Runs the group like [`run`](TaskGroup::run) and decodes every
    /// member's result into `O`, in the order given.
    pub async fn results<O: DeserializeOwned>(&self, timeout: Duration) -> Result<Vec<O>, GroupError> {
        let records = self.run(timeout).await?;
        match decode_all(&records) {
            Ok(results) => Ok(results),
            Err((index, source)) => {
                let (task_name, uuid) = (records[index].task_name.to_string(), records[index].uuid);
                Err(GroupError::Decode { index, task_name, uuid, source, records })
            }
        }
    }
}

/// Why a group did not give every member's result.
#[derive(Debug)]
#[non_exhaustive]
pub enum GroupError {
    /// A member's arguments could not be encoded; nothing was enqueued.
    InvalidArgs {
        /// The member's index, from 0.
        index: usize,
        /// The member's task.
        task_name: String,
        /// What is wrong with its arguments.
        reason: String,
    },
    /// At least one member did not end `success` or was unfinished at the
    /// timeout. Every member is reported, in the order given: its final
    /// record, or what went wrong with it.
    Incomplete {
        /// One entry per member.
        members: Vec<Result<TaskRecord, MemberError>>,
    },
    /// Every member succeeded but a result did not decode into the type
    /// asked for ([`TaskGroup::results`]).
    Decode {
        /// The member's index, from 0.
        index: usize,
        /// The member's task.
        task_name: String,
        /// The member's id.
        uuid: Uuid,
        /// The decoder's error.
        source: serde_json::Error,
        /// Every member's final record.
        records: Vec<TaskRecord>,
    },
}

impl GroupError {
    /// The members that went wrong (none for
    /// [`InvalidArgs`](GroupError::InvalidArgs) and
    /// [`Decode`](GroupError::Decode)).
    pub fn failures(&self) -> impl Iterator<Item = &MemberError> {
        let members = match self {
            Self::Incomplete { members } => members.as_slice(),
            _ => &[],
        };
        members.iter().filter_map(|m| m.as_ref().err())
    }

    /// The indexes of the members unfinished at the timeout.
    pub fn unfinished(&self) -> Vec<usize> {
        self.failures().filter(|f| matches!(f, MemberError::Unfinished { .. })).map(MemberError::index).collect()
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgs { index, task_name, reason } => {
                write!(f, "group member {index} (`{task_name}`): {reason}; nothing was enqueued")
            }
            Self::Incomplete { members } => {
                let failures: Vec<_> = self.failures().map(ToString::to_string).collect();
                let unfinished = self.unfinished();
                if unfinished.is_empty() {
                    write!(f, "{} of {} group members did not succeed: ", failures.len(), members.len())?;
                } else {
                    write!(f, "group timed out with {} of {} members unfinished: ", unfinished.len(), members.len())?;
                }
                f.write_str(&failures.join("; "))
            }
            Self::Decode { index, task_name, uuid, source, .. } => {
                write!(f, "group member {index} (`{task_name}`, {uuid}): could not decode the result: {source}")
            }
        }
    }
}

impl std::error::Error for GroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What went wrong with one member of a group.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemberError {
    /// The member ended `error` or `cancel`.
    Failed {
        /// The member's index, from 0.
        index: usize,
        /// The id the member was enqueued with.
        uuid: Uuid,
        /// Its final record (status, error); boxed, so the error stays small.
        record: Box<TaskRecord>,
    },
    /// The member was unfinished at the timeout; it may still finish.
    Unfinished {
        /// The member's index, from 0.
        index: usize,
        /// The member's task.
        task_name: String,
        /// The member's id.
        uuid: Uuid,
    },
    /// Enqueueing or waiting for the member failed on the backend.
    Backend {
        /// The member's index, from 0.
        index: usize,
        /// The member's task.
        task_name: String,
        /// The member's id, if it was enqueued.
        uuid: Option<Uuid>,
        /// What failed.
        source: Error,
    },
}

impl MemberError {
    /// The member's index, from 0.
    pub fn index(&self) -> usize {
        match self {
            Self::Failed { index, .. } | Self::Unfinished { index, .. } | Self::Backend { index, .. } => *index,
        }
    }

    /// The member's task.
    pub fn task_name(&self) -> &str {
        match self {
            Self::Failed { record, .. } => &record.task_name,
            Self::Unfinished { task_name, .. } | Self::Backend { task_name, .. } => task_name,
        }
    }
}

impl fmt::Display for MemberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { index, uuid, record } => write!(
                f,
                "member {index} (`{}`, {uuid}) ended `{}`{}",
                record.task_name,
                record.status,
                describe_error(&record.error)
            ),
            Self::Unfinished { index, task_name, uuid } => {
                write!(f, "member {index} (`{task_name}`, {uuid}) did not finish in time")
            }
            Self::Backend { index, task_name, source, .. } => write!(f, "member {index} (`{task_name}`): {source}"),
        }
    }
}

impl std::error::Error for MemberError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend { source, .. } => Some(source),
            _ => None,
        }
    }
}
