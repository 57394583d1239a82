//! Dependencies and state (QTasks's `Depends` and `State`, behaviours E15
//! and E18) on the in-memory backend, no server needed.
//!
//! - E15: 500 tasks run at once; each gets its own connection, opened
//!   before the task and closed after it (Open → value 123 → Close), and a
//!   pool opened once for the worker and closed at its shutdown.
//! - E18: `step1` fills a shared conversation state, `step2` reads it and
//!   clears it.
//!
//! Run with `cargo run --example deps_state`.

use qtasks::{Dep, Provider, QueueTasks, State, task};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A per-task connection.
struct Conn {
    value: i64,
}

/// A per-worker pool.
struct Pool {
    name: &'static str,
}

/// E15: uses its own connection and the worker's pool.
#[task]
async fn query(conn: Dep<Conn>, pool: Dep<Pool>, n: u32) -> String {
    tokio::time::sleep(Duration::from_millis(10)).await;
    format!("task {n}: value {} from {}", conn.value, pool.name)
}

/// A conversation's state (QTasks's `State` is a dict; here it is typed).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Dialog {
    state: Option<String>,
    step: u32,
    prompt: Option<String>,
}

/// E18, step 1: sets the state.
#[task]
async fn step1(dialog: State<Dialog>) {
    let mut d = dialog.write().await;
    d.state = Some("await_phone".into());
    d.step = 1;
    d.prompt = Some("Send your phone number".into());
}

/// E18, step 2: reads the state, then clears it.
#[task]
async fn step2(dialog: State<Dialog>) -> Dialog {
    std::mem::take(&mut *dialog.write().await)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opened = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (o, c) = (Arc::clone(&opened), Arc::clone(&closed));
    let app = QueueTasks::builder("deps-state")
        .tasks::<(Query, Step1, Step2)>()
        // Per task: async open, async close (an async generator in QTasks).
        .provide(
            Provider::per_task(move || {
                let o = Arc::clone(&o);
                async move {
                    o.fetch_add(1, Ordering::SeqCst);
                    Ok(Conn { value: 123 })
                }
            })
            .on_close(move |_conn: Conn| {
                let c = Arc::clone(&c);
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            }),
        )
        // Per worker: sync open, sync close.
        .provide(
            Provider::per_worker(|| {
                println!("pool: open");
                Ok(Pool { name: "the pool" })
            })
            .on_close(|pool: Pool| println!("pool: close {}", pool.name)),
        )
        .state(Dialog::default())
        .build()?;
    let worker = app.worker().max_tasks_process(500).start().await?;

    // E15
    let mut handles = Vec::new();
    for n in 0..500 {
        handles.push(app.enqueue(Query::call(n)).await?);
    }
    let mut last = String::new();
    for handle in handles {
        last = handle.result(Duration::from_secs(30)).await?;
    }
    println!("{last}");
    let (o, c) = (opened.load(Ordering::SeqCst), closed.load(Ordering::SeqCst));
    println!("E15: {o} connections opened, {c} closed");
    assert_eq!((o, c), (500, 500));

    // E18
    app.enqueue(Step1::call()).await?.result(Duration::from_secs(5)).await?;
    let seen = app.enqueue(Step2::call()).await?.result(Duration::from_secs(5)).await?;
    println!("E18: step2 read {}", serde_json::to_string(&seen)?);
    assert_eq!(seen.state.as_deref(), Some("await_phone"));
    let state = app.state::<Dialog>().ok_or("no state")?;
    println!("E18: after step2 {:?}", *state.read().await);
    assert_eq!(state.read().await.step, 0);

    worker.shutdown().await;
    Ok(())
}
