// `key_concurrency` limits runs per key: it needs `concurrency_key`.
use qtasks::task;

#[task(key_concurrency = 2)]
async fn send(user_id: u64) {
    let _ = user_id;
}

fn main() {}
