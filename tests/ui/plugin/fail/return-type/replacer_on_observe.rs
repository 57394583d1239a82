// A replacer's `Option<T>` on an observe trigger, which has no value to replace.
use qtasks::TaskRecord;
use qtasks::plugin;
use qtasks::triggers::WorkerStart;

#[plugin(on = "worker_start")]
fn audit(_ctx: &WorkerStart<'_>) -> Option<TaskRecord> {
    None
}

fn main() {}
