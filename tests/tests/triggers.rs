//! The trigger table is the single source of truth: the runtime's list, the
//! macro's list and QTasks's 56 names must agree.

use qtasks::triggers::ALL;
use qtasks::triggers::{Component, Kind};

/// QTasks's 56 trigger names (reference §1.1), byte for byte.
const QTASKS_NAMES: [&str; 56] = [
    "qtasks_add_task_before_broker",
    "qtasks_add_task_after_broker",
    "qtasks_get",
    "qtasks_stop",
    "qtasks_ping",
    "qtasks_flush_all",
    "broker_listen_start",
    "broker_add_worker",
    "broker_add_before",
    "broker_add_after",
    "broker_get",
    "broker_update",
    "broker_start",
    "broker_stop",
    "broker_remove_finished_task",
    "broker_running_older_tasks",
    "broker_flush_all",
    "storage_add",
    "storage_get",
    "storage_get_all",
    "storage_update",
    "storage_remove_finished_task",
    "storage_start",
    "storage_stop",
    "storage_add_process",
    "storage_running_older_tasks",
    "storage_delete_finished_tasks",
    "storage_flush_all",
    "global_config_set",
    "global_config_get",
    "global_config_get_all",
    "global_config_get_match",
    "global_config_start",
    "global_config_stop",
    "global_config_set_status",
    "worker_add",
    "worker_start",
    "worker_stop",
    "worker_execute_before",
    "worker_run_task_before",
    "worker_task_error_retry",
    "worker_remove_finished_task",
    "worker_execute_after",
    "task_executor_middlewares_execute",
    "task_executor_args_replace",
    "task_executor_before_execute",
    "task_executor_run_task",
    "task_executor_run_task_gen",
    "task_executor_run_task_trigger_error",
    "task_executor_after_execute",
    "task_executor_after_execute_result_replace",
    "task_executor_decode",
    "task_executor_task_close",
    "starter_start",
    "starter_stop",
    "stats_inspect",
];

#[test]
fn the_runtime_table_has_exactly_qtasks_56_names() {
    let mut ours: Vec<&str> = ALL.iter().map(|t| t.name).collect();
    let mut theirs = QTASKS_NAMES.to_vec();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
}

#[test]
fn ids_are_positions_and_names_carry_their_component_prefix() {
    for (i, t) in ALL.iter().enumerate() {
        assert_eq!(t.id as usize, i, "{}", t.name);
        assert!(t.name.starts_with(t.component.prefix()), "{} is not a {:?} name", t.name, t.component);
        assert_eq!(qtasks::triggers::by_name(t.name), Some(t));
    }
    assert_eq!(ALL.iter().filter(|t| t.component == Component::TaskExecutor).count(), 10);
    assert_eq!(ALL.iter().filter(|t| t.component == Component::Broker).count(), 11);
}

#[test]
fn the_macro_checks_names_against_the_same_table() {
    let macro_table = qtasks::__private::trigger_table!();
    assert_eq!(macro_table.len(), ALL.len());
    for ((name, context, output), t) in macro_table.iter().zip(ALL.iter()) {
        let squash = |s: &str| s.replace(' ', "");
        assert_eq!((*name, *context, squash(output)), (t.name, t.context, squash(t.output)));
    }
}

#[test]
fn only_the_error_trigger_intercepts_and_observers_return_nothing() {
    let intercept: Vec<_> = ALL.iter().filter(|t| t.kind == Kind::Intercept).map(|t| t.name).collect();
    assert_eq!(intercept, ["task_executor_run_task_trigger_error"]);
    for t in ALL.iter() {
        assert_eq!(t.kind == Kind::Observe, t.output == "()", "{}", t.name);
    }
}
