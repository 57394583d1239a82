// A misspelt `start` or `stop` is suggested as the lifecycle method, not as
// the closest trigger name (`storage_stop`).
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

#[plugin]
impl Audit {
    fn strat(&self) {}
    fn stpo(&self) {}
    fn worker_start(&self, _ctx: &WorkerStart<'_>) {}
}

fn main() {}
