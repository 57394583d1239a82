// Two handlers of one trigger: rustc's one error on the block.
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

#[plugin]
impl Audit {
    fn worker_start(&self, _ctx: &WorkerStart<'_>) {}
    fn worker_start(&self, _ctx: &WorkerStart<'_>) {}
}

fn main() {}
