use qtasks::plugin;
use qtasks::triggers::WorkerStop;

#[plugin(on = "worker_stop", nmae = "audit")]
fn audit(_ctx: &WorkerStop<'_>) {}

fn main() {}
