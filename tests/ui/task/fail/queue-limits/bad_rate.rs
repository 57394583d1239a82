// A rate needs a count and a unit of s, m or h.
use qtasks::task;

#[task(rate = "100/d")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
