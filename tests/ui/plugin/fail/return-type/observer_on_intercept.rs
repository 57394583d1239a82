// An observer's handler on the intercept trigger, with an explicit `()`.
use qtasks::plugin;
use qtasks::triggers::TaskExecutorRunTaskTriggerError;

#[plugin(on = "task_executor_run_task_trigger_error")]
fn rescue(_ctx: &TaskExecutorRunTaskTriggerError<'_>) -> () {}

fn main() {}
