//! Traces from producer to worker: the span that enqueues a task and the
//! task's span on the worker are one trace.
//!
//! - With the `opentelemetry` feature of qtasks, an enqueue inside a span
//!   carries that span's context; the worker's `task` span is its child.
//! - A trace context from elsewhere (an incoming request's `traceparent`
//!   header) is carried with `.traceparent(…)`, feature or not.
//!
//! Run with `cargo run --example tracing`. The spans go to an in-memory
//! exporter and are printed as trees at the end; a service would install
//! an OTLP exporter (`opentelemetry-otlp`) in its place.

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use qtasks::{Client, QueueTasks, TaskHandle, task};
use std::time::Duration;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Resizes an image (pretends to). Spans opened here hang under the task's.
#[task]
async fn resize(image: String, width: u32) -> String {
    tokio::time::sleep(Duration::from_millis(5)).instrument(tracing::info_span!("decode")).await;
    tracing::info!(%image, width, "resized");
    format!("{image}@{width}")
}

/// The producer: a request handler that enqueues a task inside its span.
#[tracing::instrument(skip(client))]
async fn upload(client: &Client, image: &str) -> Result<TaskHandle<String>, qtasks::Error> {
    client.enqueue(Resize::call(image.to_owned(), 320)).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans to OpenTelemetry (here: kept in memory), logs to stdout.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tracing-example")))
        .init();

    let app = QueueTasks::builder("tracing-example").task::<Resize>().build()?;
    let worker = app.worker().start().await?;
    let timeout = Duration::from_secs(5);

    // 1. The current span's context travels with the task.
    let handle = upload(&app.client(), "cat.png").await?;
    println!(
        "enqueued with traceparent {:?}",
        app.get(handle.uuid()).await?.and_then(|r| r.traceparent().map(str::to_owned))
    );
    println!("result: {}", handle.result(timeout).await?);

    // 2. A trace started elsewhere: the `traceparent` header of a request.
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let handle = app.enqueue(Resize::call("dog.png".into(), 640)).traceparent(header).await?;
    println!("result: {}", handle.result(timeout).await?);

    worker.shutdown().await;
    provider.force_flush()?;
    print_traces(&exporter.get_finished_spans()?);
    provider.shutdown()?;
    Ok(())
}

/// Prints each trace as a tree of span names.
fn print_traces(spans: &[SpanData]) {
    let mut traces = Vec::new();
    for trace in spans.iter().map(|s| s.span_context.trace_id()) {
        if !traces.contains(&trace) {
            traces.push(trace);
        }
    }
    for trace in traces {
        println!("\ntrace {trace}");
        let in_trace: Vec<_> = spans.iter().filter(|s| s.span_context.trace_id() == trace).collect();
        let known = |id: SpanId| in_trace.iter().any(|s| s.span_context.span_id() == id);
        for root in in_trace.iter().filter(|s| !known(s.parent_span_id)) {
            if root.parent_span_id != SpanId::INVALID {
                println!("  (remote parent {})", root.parent_span_id);
            }
            print_tree(&in_trace, root, 1);
        }
    }
}

fn print_tree(spans: &[&SpanData], span: &SpanData, depth: usize) {
    println!("{:indent$}{} ({})", "", span.name, span.span_context.span_id(), indent = depth * 2);
    for child in spans.iter().filter(|s| s.parent_span_id == span.span_context.span_id()) {
        print_tree(spans, child, depth + 1);
    }
}
