use qtasks::plugin;
use qtasks::triggers::WorkerStart;
use std::rc::Rc;

#[plugin(on = "worker_start")]
async fn audit(_ctx: &WorkerStart<'_>) {
    let shared = Rc::new(1);
    tokio::task::yield_now().await;
    drop(shared);
}

fn main() {}
