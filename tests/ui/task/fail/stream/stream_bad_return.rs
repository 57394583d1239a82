use qtasks::task;

#[task]
async fn async_iterator(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

#[task]
fn no_item_type(n: u32) -> impl Iterator {
    0..n
}

fn main() {}
