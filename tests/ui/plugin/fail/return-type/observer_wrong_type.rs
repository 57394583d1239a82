use qtasks::plugin;
use qtasks::triggers::WorkerStart;

#[plugin(on = "worker_start")]
fn audit(_ctx: &WorkerStart<'_>) -> u32 {
    1
}

fn main() {}
