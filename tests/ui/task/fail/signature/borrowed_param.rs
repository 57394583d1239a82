use qtasks::task;

#[task]
async fn greet(name: &str) -> String {
    format!("hello {name}")
}

fn main() {}
