//! The trigger names the macros accept, with their context type and value.
//!
//! Mirrors the table in `qtasks/src/dispatch/table.rs`; the test
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

/// What a trigger's handlers do with its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The value is `()`: handlers only watch.
    Observe,
    /// Handlers may replace the value.
    Replace,
    /// Handlers may rescue a failed task with a value.
    Intercept,
}

impl TriggerDef {
    /// The trigger's kind. The runtime table states it; here it follows from
    /// the two rules `tests/tests/triggers.rs` pins on that table: observers
    /// are the triggers whose value is `()`, and only the error trigger
    /// intercepts.
    pub(crate) fn kind(&self) -> Kind {
        if self.output == "()" {
            Kind::Observe
        } else if self.name == "task_executor_run_task_trigger_error" {
            Kind::Intercept
        } else {
            Kind::Replace
        }
    }

    /// What its handlers return, for error messages: `Option<TaskRecord>`, or
    /// nothing for an observer.
    pub(crate) fn handler_output(&self) -> Option<String> {
        (self.kind() != Kind::Observe).then(|| format!("Option<{}>", self.output))
    }

    /// The handler signature users should write, for error messages.
    pub(crate) fn expected_signature(&self, fn_name: &str, method: bool) -> String {
        let recv = if method { "&self, " } else { "" };
        let ret = self.handler_output().map(|o| format!(" -> {o}")).unwrap_or_default();
        format!("fn {fn_name}({recv}ctx: &qtasks::triggers::{}<'_>){ret}", self.context)
    }

    /// What its kind means for a handler's return value, for error messages.
    pub(crate) fn kind_rule(&self) -> String {
        let out = self.output;
        match self.kind() {
            Kind::Observe => format!(
                "`{}` is an observe trigger: its handlers return `()` or `Result<(), E>` and cannot replace a value",
                self.name
            ),
            Kind::Replace => format!(
                "`{}` is a replace trigger: its handlers return `Option<{out}>` (`None` keeps the value, `Some(new)` replaces it) or `Result<Option<{out}>, E>`",
                self.name
            ),
            Kind::Intercept => format!(
                "`{}` is an intercept trigger: its handlers return `Option<{out}>` (`Some(value)` rescues the failed task with that result, `None` lets it fail) or `Result<Option<{out}>, E>`",
                self.name
            ),
        }
    }
}

/// The component prefix of a name (`worker_execute_before` → `worker`).
fn component_of(name: &str) -> Option<&'static str> {
    ["global_config", "task_executor", "qtasks", "broker", "storage", "worker", "starter", "stats"]
        .into_iter()
        .find(|c| name.starts_with(c))
}

/// The line that helps find the right name: the triggers of `name`'s
/// component, or the components trigger names start with.
fn names_hint(name: &str) -> String {
    match component_of(name) {
        Some(c) => {
            let names: Vec<_> = TRIGGERS.iter().filter(|t| component_of(t.name) == Some(c)).map(|t| t.name).collect();
            format!("the `{c}` triggers are: {}", names.join(", "))
        }
        None => "trigger names start with a component: qtasks, broker, storage, global_config, worker, task_executor, starter, stats".to_owned(),
    }
}

/// The error for `#[plugin(on = "name")]` with an unknown trigger name.
pub(crate) fn unknown_trigger_message(name: &str) -> String {
    let suggestion = crate::diag::did_you_mean(name, TRIGGERS.iter().map(|t| t.name));
    format!("unknown trigger `{name}`{suggestion}\n{}", names_hint(name))
}

/// The lifecycle methods a `#[plugin]` impl block may have besides handlers.
pub(crate) const LIFECYCLE: [&str; 2] = ["start", "stop"];

/// The error for a method of a `#[plugin]` impl block that is neither a
/// trigger nor a lifecycle method: the closest of all those names, where
/// to find the right one, and where helpers go.
pub(crate) fn unknown_method_message(name: &str) -> String {
    let best = crate::diag::closest(name, TRIGGERS.iter().map(|t| t.name).chain(LIFECYCLE));
    let mut msg = format!("`{name}` is not a trigger, `start` or `stop`");
    if let Some(best) = best {
        msg.push_str(&format!("; did you mean `{best}`?"));
    }
    // A misspelt `start` needs no list of triggers.
    if !best.is_some_and(|b| LIFECYCLE.contains(&b)) {
        msg.push_str(&format!("\n{}", names_hint(name)));
    }
    msg.push_str(
        "\nin a `#[plugin]` impl block every method handles the trigger it is named after, or is `start` or `stop`; \
         to keep a helper method, put it in a separate `impl` block without `#[plugin]`",
    );
    msg
}
