//! An app with a duplicate task name, for `tests/tests/check_time.rs`:
//! `cargo check` (no code generation) must report it, at the `app!` call.

use qtasks::task;

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(name = "add")]
async fn add_again(a: i64) -> i64 {
    a
}

qtasks::app! {
    pub type Maths = tasks[Add, AddAgain];
}

fn main() {}
