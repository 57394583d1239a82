use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

#[plugin]
impl Audit {
    fn worker_strat(&self, _ctx: &WorkerStart<'_>) {}
}

fn main() {}
