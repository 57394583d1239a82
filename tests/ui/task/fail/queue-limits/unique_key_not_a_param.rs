// Every entry of `unique_key` names a parameter.
use qtasks::task;

#[task(unique_key = [order, "day"])]
async fn invoice(order_id: u64) {
    let _ = order_id;
}

fn main() {}
