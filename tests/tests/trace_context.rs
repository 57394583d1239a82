//! Traces from the producer to the worker (`qtasks::trace`).
//!
//! - A traceparent the caller sets (`Signature::traceparent`, no
//!   OpenTelemetry needed) is kept in the record, reaches the task and its
//!   retries, and is recorded on the worker's `task` span; a bad one fails
//!   the enqueue. On the memory backend and on Redis.
//! - With the `opentelemetry` feature (always on in this crate's tests, see
//!   `tests/Cargo.toml`) and an in-memory span exporter: the span that
//!   enqueued a task and the task's span share one trace id, the task span's
//!   parent is the producer span, and spans inside the task hang under it.
//!
//! The tests that install a subscriber run on a current-thread runtime: the
//! subscriber is the thread's default, and the worker's tasks run on that
//! thread.

mod support;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use qtasks::{Backend, Error, MemoryBackend, QueueTasks, TaskContext, TaskError, TaskRecord, json, task};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);

/// The example of the W3C Trace Context specification.
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE";

/// The traceparent the task sees.
#[task]
async fn traced(ctx: TaskContext) -> Option<String> {
    ctx.traceparent().map(str::to_owned)
}

/// Fails its first attempt; the retry tells the traceparent it sees.
#[task(retry = 1)]
async fn flaky(ctx: TaskContext) -> Result<Option<String>, TaskError> {
    if ctx.attempt() == 1 {
        return Err(TaskError::msg("the first attempt fails"));
    }
    Ok(ctx.traceparent().map(str::to_owned))
}

/// Opens a span of its own, under the task's.
#[task]
async fn nested() {
    async {}.instrument(tracing::info_span!("inside_task")).await;
}

fn app<B: Backend>(name: &str, backend: B) -> QueueTasks<impl qtasks::TaskSet, impl qtasks::PluginChain, B> {
    QueueTasks::builder(name).tasks::<(Traced, Flaky, Nested)>().backend(backend).build().unwrap()
}

// ---------------------------------------------------------------------------
// A traceparent the caller sets
// ---------------------------------------------------------------------------

/// An explicit traceparent (and tracestate) is kept in the record, in its
/// JSON as the extra fields `traceparent` and `tracestate`, reaches the
/// task and the task's retry; a task without one has none, and its JSON
/// no such field.
async fn explicit_traceparent<B: Backend>(name: &str, backend: B) {
    let app = app(name, backend);
    app.flush_all().await.unwrap();
    let worker = app.worker().start().await.unwrap();

    let handle = app.enqueue(Traced::call()).traceparent(PARENT).tracestate(STATE).await.unwrap();
    assert_eq!(handle.result(WAIT).await.unwrap().as_deref(), Some(PARENT));
    let record = handle.record(WAIT).await.unwrap();
    assert_eq!((record.traceparent(), record.tracestate()), (Some(PARENT), Some(STATE)));
    let stored = serde_json::to_value(&record).unwrap();
    assert_eq!(stored["extra"], json!({"traceparent": PARENT, "tracestate": STATE}));

    // The retry is a new task: it carries the traceparent of the attempt it replaces.
    let handle = app.enqueue(Flaky::call()).traceparent(PARENT).await.unwrap();
    assert_eq!(handle.result(WAIT).await.unwrap().as_deref(), Some(PARENT));
    let last = handle.record(WAIT).await.unwrap();
    assert_eq!((last.attempt, last.traceparent()), (2, Some(PARENT)));

    let handle = app.enqueue(Traced::call()).await.unwrap();
    assert_eq!(handle.result(WAIT).await.unwrap(), None);
    let record = handle.record(WAIT).await.unwrap();
    assert_eq!(record.traceparent(), None);
    assert!(!serde_json::to_string(&record).unwrap().contains("traceparent"));

    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

#[tokio::test]
async fn memory_an_explicit_traceparent_is_kept_and_reaches_the_task() {
    explicit_traceparent("trace-explicit", MemoryBackend::new()).await;
}

#[tokio::test]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_an_explicit_traceparent_is_kept_and_reaches_the_task() {
    let name = format!("qtasks-test-trace-{}", qtasks::Uuid::new_v4());
    let Some(backend) = support::connect_redis("trace context", &name).await else { return };
    explicit_traceparent(&name, backend).await;
}

#[tokio::test]
async fn a_traceparent_that_is_not_w3c_fails_the_enqueue() {
    let app = app("trace-invalid", MemoryBackend::new());
    let bad = [
        app.enqueue(Traced::call()).traceparent("not a traceparent"),
        app.enqueue(Traced::call()).traceparent(PARENT.to_uppercase()),
        app.enqueue(Traced::call()).traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        app.enqueue(Traced::call()).extra("traceparent", 7),
    ];
    for enqueue in bad {
        match enqueue.await {
            Err(error @ Error::InvalidTraceparent { .. }) => {
                assert!(error.to_string().contains("not a W3C traceparent"), "{error}")
            }
            other => panic!("expected InvalidTraceparent, got {other:?}"),
        }
    }
    assert!(app.get_all().await.unwrap().is_empty(), "nothing is stored");
}

#[test]
fn a_record_without_trace_context_still_decodes() {
    let old = json!({
        "uuid": "6f1d3c2e-9a4b-4c8d-8e7f-0a1b2c3d4e5f",
        "task_name": "traced",
        "priority": 0,
        "args": [],
        "status": "success",
        "created_at": 1.0,
        "updated_at": 2.0,
        "result": null,
    });
    let record: TaskRecord = serde_json::from_value(old).unwrap();
    assert_eq!((record.traceparent(), record.tracestate()), (None, None));
}

/// The `traceparent` values recorded on spans named `task`.
#[derive(Clone, Default)]
struct TaskSpanFields(Arc<Mutex<Vec<String>>>);

impl<S> tracing_subscriber::Layer<S> for TaskSpanFields
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if ctx.span(id).is_some_and(|span| span.name() == "task") {
            values.record(&mut Collect(&self.0));
        }
    }
}

struct Collect<'a>(&'a Mutex<Vec<String>>);

impl tracing::field::Visit for Collect<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "traceparent" {
            self.0.lock().unwrap().push(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

#[tokio::test(flavor = "current_thread")]
async fn the_task_span_records_the_traceparent() {
    let fields = TaskSpanFields::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(fields.clone()));
    let app = app("trace-span-field", MemoryBackend::new());
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Traced::call()).traceparent(PARENT).await.unwrap();
    handle.result(WAIT).await.unwrap();
    let handle = app.enqueue(Traced::call()).await.unwrap();
    handle.result(WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(*fields.0.lock().unwrap(), [PARENT], "one task had a traceparent, one had none");
}

// ---------------------------------------------------------------------------
// OpenTelemetry
// ---------------------------------------------------------------------------

/// A subscriber exporting to an in-memory exporter, as this thread's default.
fn otel() -> (InMemorySpanExporter, SdkTracerProvider, DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("qtasks-tests"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, provider, guard)
}

/// The one finished span named `name`.
fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let mut found = spans.iter().filter(|s| s.name == name);
    let span = found.next().unwrap_or_else(|| panic!("no span `{name}` in {:?}", names(spans)));
    assert!(found.next().is_none(), "more than one span `{name}`");
    span
}

fn names(spans: &[SpanData]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_ref()).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn the_task_span_continues_the_producers_trace() {
    let (exporter, provider, _subscriber) = otel();
    let app = app("trace-otel", MemoryBackend::new());
    let worker = app.worker().start().await.unwrap();

    let producer = tracing::info_span!("producer");
    let handle = async { app.enqueue(Nested::call()).await }.instrument(producer.clone()).await.unwrap();
    handle.result(WAIT).await.unwrap();
    let record = handle.record(WAIT).await.unwrap();
    worker.shutdown().await;
    drop(producer);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let (producer, task, inside) = (span(&spans, "producer"), span(&spans, "task"), span(&spans, "inside_task"));
    let trace = producer.span_context.trace_id();
    assert_ne!(trace, TraceId::INVALID);
    assert_eq!(task.span_context.trace_id(), trace, "the task span is in the producer's trace");
    assert_eq!(task.parent_span_id, producer.span_context.span_id(), "the producer span is the task span's parent");
    assert!(task.parent_span_is_remote, "the parent came through the message");
    assert_eq!(inside.span_context.trace_id(), trace);
    assert_eq!(inside.parent_span_id, task.span_context.span_id(), "spans in the task hang under the task span");
    // What travelled: the producer span's W3C traceparent, sampled.
    let expected = format!("00-{trace}-{}-01", producer.span_context.span_id());
    assert_eq!(record.traceparent(), Some(expected.as_str()));
}

#[tokio::test(flavor = "current_thread")]
async fn an_explicit_traceparent_wins_over_the_current_span() {
    let (exporter, provider, _subscriber) = otel();
    let app = app("trace-otel-explicit", MemoryBackend::new());
    let worker = app.worker().start().await.unwrap();

    let producer = tracing::info_span!("producer");
    let enqueue = async { app.enqueue(Nested::call()).traceparent(PARENT).await };
    let handle = enqueue.instrument(producer.clone()).await.unwrap();
    handle.result(WAIT).await.unwrap();
    worker.shutdown().await;
    drop(producer);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let task = span(&spans, "task");
    assert_eq!(task.span_context.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    assert_eq!(task.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert_ne!(task.span_context.trace_id(), span(&spans, "producer").span_context.trace_id());
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_enqueued_outside_any_span_starts_its_own_trace() {
    let (exporter, provider, _subscriber) = otel();
    let app = app("trace-otel-root", MemoryBackend::new());
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Nested::call()).await.unwrap();
    handle.result(WAIT).await.unwrap();
    let record = handle.record(WAIT).await.unwrap();
    worker.shutdown().await;
    provider.force_flush().unwrap();

    assert_eq!(record.traceparent(), None, "no span, nothing injected");
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(span(&spans, "task").parent_span_id, SpanId::INVALID, "the task span is a root");
}
