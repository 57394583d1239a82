use qtasks::task;
use std::rc::Rc;

#[task]
async fn count() -> usize {
    let shared = Rc::new(1);
    tokio::task::yield_now().await;
    *shared
}

fn main() {}
