// `#[plugin]` on a trait impl (here a hand-written `impl Plugin`).
use qtasks::triggers::WorkerStart;
use qtasks::{Outcome, Plugin, plugin};

struct Audit;

#[plugin]
impl Plugin for Audit {
    type Tasks = ();

    async fn worker_start(&self, _ctx: &WorkerStart<'_>) -> Outcome<()> {
        Outcome::Keep
    }
}

fn main() {}
