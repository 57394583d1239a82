// `Result<_, E>` with an `E` that is not an error type: the cause is named.
use qtasks::plugin;
use qtasks::triggers::WorkerStop;

struct NotAnError;

#[plugin(on = "worker_stop")]
fn audit(_ctx: &WorkerStop<'_>) -> Result<(), NotAnError> {
    Ok(())
}

fn main() {}
