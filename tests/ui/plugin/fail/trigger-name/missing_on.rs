use qtasks::plugin;
use qtasks::triggers::WorkerStart;

#[plugin]
fn audit(_ctx: &WorkerStart<'_>) {}

fn main() {}
