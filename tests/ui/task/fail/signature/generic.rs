use qtasks::task;

#[task]
async fn echo<T>(value: T) -> T {
    value
}

fn main() {}
