// `unique_for` is the window of a unique key: it needs one.
use qtasks::task;

#[task(unique_for = 60)]
async fn invoice(order_id: u64) {
    let _ = order_id;
}

fn main() {}
