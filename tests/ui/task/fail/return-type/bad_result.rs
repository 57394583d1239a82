use qtasks::task;

#[task]
fn parse(text: String) -> Result<i64, String> {
    text.parse().map_err(|_| "not a number".to_owned())
}

fn main() {}
