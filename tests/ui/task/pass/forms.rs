use qtasks::{PluginError, QueueTasks, Task, TaskContext, task};

/// Adds two numbers.
#[task(name = "math.add", priority = -1, max_time = 1.5, tags = ["math"])]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn sync_task(ctx: TaskContext, text: String) -> Result<usize, std::io::Error> {
    let _ = ctx.uuid();
    Ok(text.len())
}

#[task]
async fn no_args(ctx: &TaskContext) -> Result<(), PluginError> {
    Err(ctx.plugin_error("why"))
}

/// A parameter written as a pattern is named after its position: `arg0`.
#[task]
async fn pattern((low, high): (u32, u32), step: u32) -> u32 {
    (high - low) / step
}

fn main() {
    assert_eq!(Pattern::INFO.params, ["arg0", "step"]);
    assert_eq!(Add::INFO.name, "math.add");
    assert_eq!(Add::INFO.description, Some("Adds two numbers."));
    assert!(SyncTask::INFO.blocking);
    let _app = QueueTasks::builder("forms").tasks::<(Add, SyncTask, NoArgs, Pattern)>().build().unwrap();
}
