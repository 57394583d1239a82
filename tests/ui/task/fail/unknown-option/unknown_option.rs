use qtasks::task;

#[task(priorty = 1)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {}
