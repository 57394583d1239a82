use qtasks::{Dep, State, task};

struct Db;

#[task]
async fn query(db: &Dep<Db>, seen: &mut State<u32>) -> u32 {
    let _ = db;
    *seen.read().await
}

fn main() {}
