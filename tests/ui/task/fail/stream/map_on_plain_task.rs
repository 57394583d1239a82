use qtasks::task;

fn add_two(x: u32) -> u32 {
    x + 2
}

/// Returns one value: there are no items to map.
#[task(map = add_two)]
async fn plain(n: u32) -> u32 {
    n
}

fn main() {}
