use qtasks::plugin;
use qtasks::triggers::WorkerStop;

// Blocking methods run detached on a clone of the plugin.
struct Audit {
    _log: std::fs::File,
}

#[plugin]
impl Audit {
    #[blocking]
    fn worker_stop(&self, _ctx: &WorkerStop<'_>) {}
}

fn main() {}
