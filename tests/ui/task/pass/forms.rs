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

fn main() {
    assert_eq!(add::INFO.name, "math.add");
    assert_eq!(add::INFO.description, Some("Adds two numbers."));
    assert!(sync_task::INFO.blocking);
    let _app = QueueTasks::builder("forms").tasks::<(add, sync_task, no_args)>().build().unwrap();
}
