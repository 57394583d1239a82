// A body that does not parse (being typed): rustc's syntax error only; the
// plugin type is still generated, so its uses raise nothing more.
use qtasks::plugin;
use qtasks::triggers::{WorkerStart, WorkerStop};

#[plugin(on = "worker_stop")]
fn audit(_ctx: &WorkerStop<'_>) {
    let x = ;
}

struct Tracker;

#[plugin]
impl Tracker {
    fn worker_start(&self, _ctx: &WorkerStart<'_>) {
        let y = ;
    }
}

fn main() {
    let _app = qtasks::QueueTasks::builder("typing").plugin(Audit).plugin(Tracker).build();
}
