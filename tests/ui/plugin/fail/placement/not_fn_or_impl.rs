use qtasks::plugin;

#[plugin]
struct Audit;

fn main() {}
