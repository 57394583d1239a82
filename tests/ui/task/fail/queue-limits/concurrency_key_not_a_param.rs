// The concurrency key names one of the task's parameters.
use qtasks::task;

#[task(concurrency_key = user)]
async fn send(user_id: u64, to: String) {
    let _ = (user_id, to);
}

fn main() {}
