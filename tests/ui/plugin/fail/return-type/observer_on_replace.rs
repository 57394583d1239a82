// An observer's handler (returning nothing) on a replace trigger: the error
// names the kind and the `Option<T>` it must return.
use qtasks::plugin;
use qtasks::triggers::WorkerExecuteBefore;

struct Audit;

#[plugin]
impl Audit {
    fn worker_execute_before(&self, _ctx: &WorkerExecuteBefore<'_>) {}
}

fn main() {}
