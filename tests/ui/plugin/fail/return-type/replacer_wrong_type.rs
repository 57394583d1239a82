// The value itself instead of `Option<value>`: reported on the return type.
use qtasks::TaskRecord;
use qtasks::plugin;
use qtasks::triggers::WorkerExecuteBefore;

struct Audit;

#[plugin]
impl Audit {
    async fn worker_execute_before(&self, ctx: &WorkerExecuteBefore<'_>) -> TaskRecord {
        ctx.model.clone()
    }
}

fn main() {}
