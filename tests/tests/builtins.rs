//! The built-in plugins of `qtasks-plugins`.

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use qtasks::{QueueTasks, TaskStatus, Value, json, task};
use qtasks_plugins::{TaskLog, TaskMetrics, TestingTagger};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[task]
async fn echo(x: Value) -> Value {
    x
}

#[task]
async fn fail() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("it broke"))
}

#[tokio::test]
async fn the_testing_tagger_marks_test_traffic_only() {
    let app = QueueTasks::builder("tagger").task::<Echo>().plugin(TestingTagger).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let tagged = app.add_task("echo", [1]).extra("test", true).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(tagged.extra.get("is_testing"), Some(&json!("true")));
    assert_eq!(tagged.extra.get("test"), Some(&json!(true)), "the original extra field is kept");
    let plain = app.add_task("echo", [2]).await.unwrap().record(WAIT).await.unwrap();
    assert!(!plain.extra.contains_key("is_testing"));
    let off = app.add_task("echo", [3]).extra("test", false).await.unwrap().record(WAIT).await.unwrap();
    assert!(!off.extra.contains_key("is_testing"));
    worker.shutdown().await;
}

/// Captures formatted `tracing` output.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_task_log_reports_every_finished_task_with_its_status() {
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let app = QueueTasks::builder("log").task::<Echo>().task::<Fail>().plugin(TaskLog).build().unwrap();
        let worker = app.worker().start().await.unwrap();
        app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
        app.add_task("fail", ()).await.unwrap().record(WAIT).await.unwrap();
        worker.shutdown().await;
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("task started"), "{text}");
    let finished: Vec<&str> = text.lines().filter(|l| l.contains("task finished")).collect();
    assert_eq!(finished.len(), 2, "{text}");
    assert!(
        finished[0].contains("INFO") && finished[0].contains("status=success") && finished[0].contains("task=echo")
    );
    assert!(finished[1].contains("WARN") && finished[1].contains("status=error") && finished[1].contains("it broke"));
}

/// A `metrics` recorder that counts what it receives, by key.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<BTreeMap<String, f64>>>);

struct Slot(Arc<Mutex<BTreeMap<String, f64>>>, String);

impl CounterFn for Slot {
    fn increment(&self, value: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.0.lock().unwrap().insert(self.1.clone(), value as f64);
    }
}

impl HistogramFn for Slot {
    fn record(&self, _value: f64) {
        *self.0.lock().unwrap().entry(format!("{}#samples", self.1)).or_default() += 1.0;
    }
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Slot(self.0.clone(), render(key))))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Slot(self.0.clone(), render(key))))
    }
}

#[test]
fn task_metrics_count_enqueues_and_final_statuses_through_the_metrics_facade() {
    let recorder = Counting::default();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = QueueTasks::builder("m").task::<Echo>().task::<Fail>().plugin(TaskMetrics).build().unwrap();
            let worker = app.worker().start().await.unwrap();
            for n in 0..3 {
                assert_eq!(
                    app.add_task("echo", [n]).await.unwrap().record(WAIT).await.unwrap().status,
                    TaskStatus::Success
                );
            }
            app.add_task("fail", ()).await.unwrap().record(WAIT).await.unwrap();
            worker.shutdown().await;
        });
    });
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen.get("qtasks_tasks_enqueued_total{app=m,task=echo}"), Some(&3.0), "{seen:?}");
    assert_eq!(seen.get("qtasks_tasks_finished_total{app=m,status=success,task=echo}"), Some(&3.0), "{seen:?}");
    assert_eq!(seen.get("qtasks_tasks_finished_total{app=m,status=error,task=fail}"), Some(&1.0), "{seen:?}");
    assert_eq!(seen.get("qtasks_task_seconds{app=m,status=success,task=echo}#samples"), Some(&3.0), "{seen:?}");
}
