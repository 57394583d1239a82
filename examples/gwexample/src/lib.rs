//! A plugin crate that contributes tasks, like Girder Worker's `gwexample`.
//!
//! Adding [`GwExample`] to an app registers the [`fibonacci`] task with it:
//!
//! ```
//! use qtasks::QueueTasks;
//!
//! let app = QueueTasks::builder("demo").plugin(gwexample::GwExample).build().unwrap();
//! assert_eq!(app.tasks()[0].name, "fibonacci");
//! assert_eq!(app.plugins()[0].tasks, ["fibonacci"]); // labelled by the plugin itself
//! ```

use qtasks::{plugin, task};

/// The `n`-th Fibonacci number (`fibonacci(1) == fibonacci(2) == 1`),
/// computed the slow way on purpose, as in Girder's example: a CPU-bound sync
/// task, which runs on the blocking pool.
#[task]
pub fn fibonacci(n: u64) -> u64 {
    if n <= 2 { 1 } else { fibonacci(n - 1) + fibonacci(n - 2) }
}

/// The plugin: it contributes [`fibonacci`] and logs its lifecycle.
#[derive(Clone, Copy, Debug, Default)]
pub struct GwExample;

#[plugin(name = "gwexample", tasks(Fibonacci))]
impl GwExample {
    fn start(&self) {
        tracing::info!("gwexample plugin started");
    }

    fn stop(&self) {
        tracing::info!("gwexample plugin stopped");
    }
}
