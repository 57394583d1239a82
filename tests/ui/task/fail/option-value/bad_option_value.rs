use qtasks::task;

#[task(max_time = "2s", name = 5, tags = "a")]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {}
