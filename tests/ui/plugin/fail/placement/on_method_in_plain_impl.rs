// `#[plugin(on = …)]` on a method, the impl block without `#[plugin]`.
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

impl Audit {
    #[plugin(on = "worker_start")]
    fn audit(&self, _ctx: &WorkerStart<'_>) {}
}

fn main() {}
