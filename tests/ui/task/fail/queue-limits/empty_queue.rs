// A queue has a name.
use qtasks::task;

#[task(queue = "")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
