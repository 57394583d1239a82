// Durations past what milliseconds in a `u64` hold are errors on the
// literal, not a panic of the macro.
use qtasks::task;

#[task(max_time = 18446744073709552, retry = 1, backoff = 1e300)]
async fn slow() {}

fn main() {}
