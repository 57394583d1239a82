use qtasks::{Stream, stream, task};

#[task(map = "add_two")]
fn quoted(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

#[task(map = 2)]
fn number(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

#[task(map_item = String)]
fn no_map(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

fn main() {}
