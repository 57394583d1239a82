use qtasks::plugin;

#[plugin(on = "worker_start")]
fn audit() {}

fn main() {}
