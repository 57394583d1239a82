use qtasks::plugin;
use qtasks::triggers::WorkerExecuteBefore;

#[plugin(on = "worker_exec_before")]
fn audit(_ctx: &WorkerExecuteBefore<'_>) {}

fn main() {}
