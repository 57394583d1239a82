// `#[plugin(on = …)]` on a method of a `#[plugin]` impl block.
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

#[plugin]
impl Audit {
    #[plugin(on = "worker_start")]
    fn audit(&self, _ctx: &WorkerStart<'_>) {}
}

fn main() {}
