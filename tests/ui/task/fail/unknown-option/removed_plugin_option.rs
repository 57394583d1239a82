// `plugin = ".."` was a task option; a plugin now labels its tasks itself.
use qtasks::task;

#[task(plugin = "gwexample")]
fn fibonacci(n: u64) -> u64 {
    n
}

fn main() {}
