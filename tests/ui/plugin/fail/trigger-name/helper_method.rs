// Every method of a `#[plugin]` impl block is a handler or `start`/`stop`;
// the error says where a helper goes.
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

struct Audit;

#[plugin]
impl Audit {
    fn worker_start(&self, _ctx: &WorkerStart<'_>) {
        self.log("start");
    }

    fn log(&self, _what: &str) {}
}

fn main() {}
