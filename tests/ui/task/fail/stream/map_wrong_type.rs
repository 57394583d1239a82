use qtasks::{Stream, stream, task};

fn shout(s: String) -> String {
    s.to_uppercase()
}

fn label(x: u32) -> String {
    format!("#{x}")
}

/// The items are `u32`, the handler takes a `String`.
#[task(map = shout)]
fn wrong_input(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

/// The handler changes the type without `map_item = String`.
#[task(map = label)]
fn wrong_output(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

fn main() {}
