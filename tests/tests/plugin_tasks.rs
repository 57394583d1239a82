//! Plugins that bring tasks (Girder Worker's `task_imports`).

use qtasks::{QueueTasks, TaskStatus, json, task};
use std::time::Duration;

#[task]
async fn own_task() -> u8 {
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_plugin_registers_its_tasks_and_listings_show_where_they_came_from() {
    let app = QueueTasks::builder("girder").task::<OwnTask>().plugin(gwexample::GwExample).build().unwrap();
    let listed: Vec<_> = app.tasks().iter().map(|t| t.name).collect();
    assert_eq!(listed, ["own_task", "fibonacci"]);
    let plugins = app.plugins();
    assert_eq!((plugins[0].name.as_str(), plugins[0].version.as_str()), ("gwexample", "0.1.0"));
    // The plugin labels the tasks it brings; the app's own task has no label.
    assert_eq!(plugins[0].tasks, ["fibonacci"]);
    // What `inspect plugins --json` prints (the text form lists the same fields).
    let listed = serde_json::to_value(&plugins).unwrap();
    assert_eq!((&listed[0]["name"], &listed[0]["tasks"]), (&json!("gwexample"), &json!(["fibonacci"])));
    let inspection = app.inspect().await.unwrap();
    let origins: Vec<_> = inspection.tasks.iter().map(|t| (t.info.name, t.plugin.as_deref())).collect();
    assert_eq!(origins, [("own_task", None), ("fibonacci", Some("gwexample"))]);
    assert!(inspection.to_string().contains("plugin               gwexample"), "{inspection}");
    let banner = qtasks::cli::banner(&app, "memory://", 4, None);
    assert!(banner.contains(". fibonacci (from plugin gwexample)"), "{banner}");

    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("fibonacci", [26]).await.unwrap().record(Duration::from_secs(30)).await.unwrap();
    assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(121393))));
    let own = app.add_task("own_task", ()).await.unwrap().record(Duration::from_secs(10)).await.unwrap();
    assert_eq!(own.result, Some(json!(1)));
    worker.shutdown().await;
}
