use qtasks::plugin;
use qtasks::triggers::WorkerStart;

#[plugin(on = "worker_execute_before")]
fn audit(_ctx: &WorkerStart<'_>) {}

fn main() {}
