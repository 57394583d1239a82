// A body that does not parse (being typed): rustc's syntax error only; the
// task type is still generated, so its uses raise nothing more.
use qtasks::task;

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a +
}

fn main() {
    let _app = qtasks::QueueTasks::builder("typing").task::<Add>().build();
}
