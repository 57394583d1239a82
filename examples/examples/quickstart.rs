//! Quickstart: tasks and a plugin on the in-memory backend, no server needed.
//!
//! Run with `cargo run --example quickstart`.

use qtasks::triggers::{TaskExecutorArgsReplace, WorkerExecuteAfter};
use qtasks::{Backend, QueueTasks, TaskContext, TaskStatus, Value, json, plugin, task};
use std::time::Duration;

/// Adds two numbers.
#[task(priority = 1)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Greets a user; a sync task, so it runs on the blocking pool.
#[task(name = "greet", tags = ["demo"])]
fn greet(ctx: &TaskContext, user: String) -> String {
    format!("Пользователь {user} записан (task {})", ctx.name())
}

/// Fails on purpose.
#[task]
fn divide(a: i64, b: i64) -> Result<i64, std::io::Error> {
    if b == 0 {
        return Err(std::io::Error::other("division by zero"));
    }
    Ok(a / b)
}

/// Logs every finished task: a sync observer, called inline.
#[plugin(on = "worker_execute_after")]
fn log_finished(ctx: &WorkerExecuteAfter<'_>) {
    println!("  [plugin] {} {} -> {}", ctx.model.task_name, ctx.model.uuid, ctx.model.status);
}

/// Doubles every integer argument of `add`: a replace trigger.
#[plugin(on = "task_executor_args_replace")]
async fn double_add_args(ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
    if ctx.task.name != "add" {
        return None;
    }
    let doubled = ctx.args.as_array()?.iter().map(|v| json!(v.as_i64().unwrap_or(0) * 2)).collect();
    Some(Value::Array(doubled))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("quickstart")
        .task::<Add>()
        .task::<Greet>()
        .task::<Divide>()
        .plugin(LogFinished)
        .plugin(DoubleAddArgs)
        .build()?;

    let worker = app.worker().max_tasks_process(4).start().await?;
    println!("app `{}` on the {} backend", app.name(), app.backend().kind());
    for t in app.tasks() {
        println!("  task {} (priority {}, blocking: {})", t.name, t.priority.unwrap_or(0), t.blocking);
    }
    for p in app.plugins() {
        println!("  plugin {} {} on {:?}", p.name, p.version, p.triggers);
    }

    // Typed: arguments and result are checked by the compiler.
    let sum = app.enqueue(Add::call(2, 3)).await?.result(Duration::from_secs(5)).await?;
    println!("add(2, 3) with doubled arguments = {sum}");

    // By name, with JSON arguments, as a client in another process would.
    let task = app.add_task("greet", ["Ада"]).await?.record(Duration::from_secs(5)).await?;
    println!("greet -> {} {}", task.status, task.result.unwrap_or_default());

    let task = app.add_task("divide", (1, 0)).await?.record(Duration::from_secs(5)).await?;
    assert_eq!(task.status, TaskStatus::Error);
    println!("divide(1, 0) -> {}: {}", task.status, task.error.unwrap_or_default());

    let task = app.add_task("no_such_task", ()).await?.record(Duration::from_secs(5)).await?;
    println!("no_such_task -> {}: {}", task.status, task.error.unwrap_or_default());

    // Direct calls still work: the function is unchanged.
    assert_eq!(add(1, 1).await, 2);

    worker.shutdown().await;
    Ok(())
}
