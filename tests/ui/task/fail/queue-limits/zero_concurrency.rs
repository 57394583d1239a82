// A concurrency limit of 0 would never run the task.
use qtasks::task;

#[task(concurrency = 0)]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
