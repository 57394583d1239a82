//! `Dep<T>` and `State<T>` parameters, by value, next to the context and
//! JSON arguments, in async and sync tasks; a type of one's own named
//! `State` without a type argument stays a JSON argument.

use qtasks::{Dep, Provider, QueueTasks, TaskContext, task};
use serde::{Deserialize, Serialize};

struct Db {
    url: String,
}

#[derive(Serialize, Deserialize)]
enum State {
    Open,
    Closed,
}

#[task]
async fn load(ctx: TaskContext, db: qtasks::Dep<Db>, seen: qtasks::State<u32>, state: State) -> String {
    *seen.write().await += 1;
    format!("{} {} {}", ctx.name(), db.url, matches!(state, State::Open))
}

#[task]
fn load_sync(db: Dep<Db>, id: u64, seen: qtasks::State<u32>) -> String {
    format!("{} {id} {}", db.url, *seen.blocking_read())
}

fn main() {
    let _app = QueueTasks::builder("deps")
        .tasks::<(Load, LoadSync)>()
        .provide(Provider::per_worker(|| Ok(Db { url: "db://".into() })))
        .state(0u32)
        .build()
        .unwrap();
    let _ = State::Closed;
}
