use qtasks::triggers::*;
use qtasks::{Outcome, Plugin, QueueTasks, TaskRecord, Value, plugin};

#[plugin(on = "worker_start")]
fn sync_observer(_ctx: &WorkerStart<'_>) {}

#[plugin(on = "task_executor_run_task_trigger_error")]
async fn async_rescue(_ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
    None
}

#[plugin(on = "task_executor_after_execute", blocking, name = "audit", version = "2.0.0")]
fn blocking_observer(_ctx: &TaskExecutorAfterExecute<'_>) -> Result<(), std::io::Error> {
    Ok(())
}

// Return types the macro cannot read (aliases) are checked by rustc, and
// `Outcome` is accepted as is.
type Hook = Result<(), std::io::Error>;
type Replaced = Option<TaskRecord>;

#[plugin(on = "worker_stop")]
fn aliased_observer(_ctx: &WorkerStop<'_>) -> Hook {
    Ok(())
}

struct Replacer;

#[plugin]
impl Replacer {
    fn worker_execute_before(&self, ctx: &WorkerExecuteBefore<'_>) -> Replaced {
        self.keep(ctx)
    }
    async fn worker_remove_finished_task(&self, _ctx: &WorkerRemoveFinishedTask<'_>) -> Outcome<TaskRecord> {
        Outcome::Keep
    }
    fn broker_add_after(&self, _ctx: &BrokerAddAfter<'_>) -> Outcome<()> {
        Outcome::Keep
    }
}

// Helper methods live in an impl block without `#[plugin]`.
impl Replacer {
    fn keep(&self, _ctx: &WorkerExecuteBefore<'_>) -> Replaced {
        None
    }
}

#[derive(Clone)]
struct Many<T> {
    _t: T,
}

// A `#[blocking]` method runs detached on a clone of the plugin: `Clone` is needed.
#[plugin]
impl<T: Clone + Send + Sync + 'static> Many<T> {
    async fn start(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn stop(&self) {}
    fn worker_execute_before(&self, _ctx: &WorkerExecuteBefore<'_>) -> Option<TaskRecord> {
        None
    }
    #[blocking]
    fn worker_stop(&self, _ctx: &WorkerStop<'_>) {}
}

fn main() {
    assert_eq!(BlockingObserver.name(), "audit");
    assert_eq!(BlockingObserver.version(), "2.0.0");
    let _app = QueueTasks::builder("forms")
        .plugin(SyncObserver)
        .plugin(AsyncRescue)
        .plugin(BlockingObserver)
        .plugin(Many { _t: 1u8 })
        .plugin(AliasedObserver)
        .plugin(Replacer)
        .build()
        .unwrap();
}

// Handlers whose tokens come from a `macro_rules!` (hygiene of `ctx`/`self`).
macro_rules! observer {
    ($name:ident, $($kw:tt)*) => {
        #[plugin(on = "worker_stop")]
        $($kw)* fn $name(_ctx: &WorkerStop<'_>) {}
    };
}
observer!(from_macro_sync,);
observer!(from_macro_async, async);

struct Lifecycle;
macro_rules! lifecycle_impl {
    ($($kw:tt)*) => {
        #[plugin]
        impl Lifecycle {
            $($kw)* fn start(&self) {}
            fn worker_start(&self, _ctx: &WorkerStart<'_>) {}
        }
    };
}
lifecycle_impl!(async);

#[allow(dead_code)]
fn more() {
    let _app = QueueTasks::builder("macros").plugin(FromMacroSync).plugin(FromMacroAsync).plugin(Lifecycle).build();
}
