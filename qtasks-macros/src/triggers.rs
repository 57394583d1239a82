//! The trigger names the macros accept, with their context type and value.
//!
//! Mirrors the table in `qtasks/src/triggers.rs`; the test
//! `tests/tests/triggers.rs` checks the two agree name by name.

/// One trigger: name, context type, value type (`()` for observers).
pub(crate) struct TriggerDef {
    pub name: &'static str,
    pub context: &'static str,
    pub output: &'static str,
}

macro_rules! defs {
    ($($name:literal $ctx:literal $out:literal;)*) => {
        pub(crate) const TRIGGERS: &[TriggerDef] = &[$(TriggerDef { name: $name, context: $ctx, output: $out }),*];
    };
}

defs! {
    "qtasks_add_task_before_broker" "QtasksAddTaskBeforeBroker" "NewTask";
    "qtasks_add_task_after_broker" "QtasksAddTaskAfterBroker" "()";
    "qtasks_get" "QtasksGet" "TaskRecord";
    "qtasks_stop" "QtasksStop" "()";
    "qtasks_ping" "QtasksPing" "()";
    "qtasks_flush_all" "QtasksFlushAll" "()";
    "broker_listen_start" "BrokerListenStart" "()";
    "broker_add_worker" "BrokerAddWorker" "TaskMessage";
    "broker_add_before" "BrokerAddBefore" "TaskRecord";
    "broker_add_after" "BrokerAddAfter" "()";
    "broker_get" "BrokerGet" "TaskRecord";
    "broker_update" "BrokerUpdate" "TaskRecord";
    "broker_start" "BrokerStart" "()";
    "broker_stop" "BrokerStop" "()";
    "broker_remove_finished_task" "BrokerRemoveFinishedTask" "TaskRecord";
    "broker_running_older_tasks" "BrokerRunningOlderTasks" "()";
    "broker_flush_all" "BrokerFlushAll" "()";
    "storage_add" "StorageAdd" "TaskRecord";
    "storage_get" "StorageGet" "TaskRecord";
    "storage_get_all" "StorageGetAll" "Vec<TaskRecord>";
    "storage_update" "StorageUpdate" "TaskRecord";
    "storage_remove_finished_task" "StorageRemoveFinishedTask" "()";
    "storage_start" "StorageStart" "()";
    "storage_stop" "StorageStop" "()";
    "storage_add_process" "StorageAddProcess" "TaskMessage";
    "storage_running_older_tasks" "StorageRunningOlderTasks" "TaskMessage";
    "storage_delete_finished_tasks" "StorageDeleteFinishedTasks" "()";
    "storage_flush_all" "StorageFlushAll" "()";
    "global_config_set" "GlobalConfigSet" "Value";
    "global_config_get" "GlobalConfigGet" "Value";
    "global_config_get_all" "GlobalConfigGetAll" "Map<String, Value>";
    "global_config_get_match" "GlobalConfigGetMatch" "Map<String, Value>";
    "global_config_start" "GlobalConfigStart" "()";
    "global_config_stop" "GlobalConfigStop" "()";
    "global_config_set_status" "GlobalConfigSetStatus" "()";
    "worker_add" "WorkerAdd" "TaskMessage";
    "worker_start" "WorkerStart" "()";
    "worker_stop" "WorkerStop" "()";
    "worker_execute_before" "WorkerExecuteBefore" "TaskRecord";
    "worker_run_task_before" "WorkerRunTaskBefore" "()";
    "worker_task_error_retry" "WorkerTaskErrorRetry" "TaskRecord";
    "worker_remove_finished_task" "WorkerRemoveFinishedTask" "TaskRecord";
    "worker_execute_after" "WorkerExecuteAfter" "()";
    "task_executor_middlewares_execute" "TaskExecutorMiddlewaresExecute" "()";
    "task_executor_args_replace" "TaskExecutorArgsReplace" "Value";
    "task_executor_before_execute" "TaskExecutorBeforeExecute" "()";
    "task_executor_run_task" "TaskExecutorRunTask" "Value";
    "task_executor_run_task_gen" "TaskExecutorRunTaskGen" "Vec<Value>";
    "task_executor_run_task_trigger_error" "TaskExecutorRunTaskTriggerError" "Value";
    "task_executor_after_execute" "TaskExecutorAfterExecute" "()";
    "task_executor_after_execute_result_replace" "TaskExecutorAfterExecuteResultReplace" "Value";
    "task_executor_decode" "TaskExecutorDecode" "Value";
    "task_executor_task_close" "TaskExecutorTaskClose" "()";
    "starter_start" "StarterStart" "()";
    "starter_stop" "StarterStop" "()";
    "stats_inspect" "StatsInspect" "()";
}

pub(crate) fn find(name: &str) -> Option<&'static TriggerDef> {
    TRIGGERS.iter().find(|t| t.name == name)
}

impl TriggerDef {
    /// The handler signature users should write, for error messages.
    pub(crate) fn expected_signature(&self, fn_name: &str, method: bool) -> String {
        let recv = if method { "&self, " } else { "" };
        let ret = if self.output == "()" { String::new() } else { format!(" -> Option<{}>", self.output) };
        format!("fn {fn_name}({recv}ctx: &qtasks::triggers::{}<'_>){ret}", self.context)
    }
}

/// The component prefix of a name (`worker_execute_before` → `worker`).
fn component_of(name: &str) -> Option<&'static str> {
    ["global_config", "task_executor", "qtasks", "broker", "storage", "worker", "starter", "stats"]
        .into_iter()
        .find(|c| name.starts_with(c))
}

/// The "did you mean" part of an unknown-trigger error.
pub(crate) fn unknown_trigger_message(name: &str) -> String {
    let mut msg = format!("unknown trigger `{name}`");
    let best = TRIGGERS
        .iter()
        .map(|t| (strsim::jaro_winkler(name, t.name), t.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, suggestion)) = best {
        msg.push_str(&format!("; did you mean `{suggestion}`?"));
    }
    match component_of(name) {
        Some(c) => {
            let names: Vec<_> = TRIGGERS.iter().filter(|t| component_of(t.name) == Some(c)).map(|t| t.name).collect();
            msg.push_str(&format!("\nthe `{c}` triggers are: {}", names.join(", ")));
        }
        None => msg.push_str(
            "\ntrigger names start with a component: qtasks, broker, storage, global_config, worker, task_executor, starter, stats",
        ),
    }
    msg
}
