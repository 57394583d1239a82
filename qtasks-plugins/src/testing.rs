//! [`TestingTagger`]: QTasks's testing plugin.

use qtasks::TaskRecord;
use qtasks::plugin;
use qtasks::triggers::{WorkerExecuteBefore, WorkerRemoveFinishedTask};
use serde_json::Value;

/// Marks test traffic: a task enqueued with the extra field `test` (any
/// value but `false`/`null`) gets the field `is_testing` (the value as a
/// string) in its stored `process` and final records, so test runs can be
/// told apart from real ones (QTasks's `TestPlugin`, with its non-dict
/// return bug fixed: it returns the whole record, extra fields kept).
///
/// ```
/// let app = qtasks::QueueTasks::builder("demo").plugin(qtasks_plugins::TestingTagger).build().unwrap();
/// assert_eq!(app.plugins()[0].triggers, ["worker_execute_before", "worker_remove_finished_task"]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TestingTagger;

fn tag(model: &TaskRecord) -> Option<TaskRecord> {
    let value = model.extra.get("test")?;
    if matches!(value, Value::Null | Value::Bool(false)) {
        return None;
    }
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut tagged = model.clone();
    tagged.extra.insert("is_testing".to_owned(), Value::String(shown));
    Some(tagged)
}

#[plugin(name = "testing_tagger")]
impl TestingTagger {
    fn worker_execute_before(&self, ctx: &WorkerExecuteBefore<'_>) -> Option<TaskRecord> {
        tag(&ctx.model)
    }

    fn worker_remove_finished_task(&self, ctx: &WorkerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
        tag(&ctx.model)
    }
}
