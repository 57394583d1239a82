use qtasks::{Dep, task};

struct Db;

#[task]
async fn query(db: Option<Dep<Db>>, pair: (u32, Dep<Db>)) -> u32 {
    let _ = db;
    pair.0
}

fn main() {}
