use qtasks::plugin;

struct Audit;

#[plugin]
impl Audit {
    async fn start(&self, _retries: u32) {}
}

fn main() {}
