use qtasks::plugin;
use qtasks::triggers::WorkerStart;

#[plugin(on = "worker_start", blocking)]
async fn audit(_ctx: &WorkerStart<'_>) {}

fn main() {}
