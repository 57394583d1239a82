//! The trigger table: the one place the 56 QTasks triggers are declared.
//!
//! Every consumer expands this table with its own macro: the context structs
//! and their [`Trigger`](super::Trigger) impls ([`super::triggers`]), the
//! [`Plugin`](super::Plugin) trait, and the wrappers in [`crate::plugin`]
//! (`Globals`, `DynChain`, `Managed`). The `#[plugin]` macro keeps its own
//! list of names for compile-time checks; a test compares the two.

/// Calls `$cb! { rows }` with the whole trigger table.
///
/// Row: `id name name_sync Context (Component, Kind, Output) apply(|ctx, v| …) task_id(|ctx| …) task_name(|ctx| …) { fields }`.
macro_rules! trigger_table {
    ($cb:ident) => {
        $cb! {
            // ---- qtasks: the app and its client ----
            /// Before a client enqueues a task; may replace the request (name, priority, args, extra).
            0 qtasks_add_task_before_broker qtasks_add_task_before_broker_sync QtasksAddTaskBeforeBroker (Qtasks, Replace, NewTask)
                apply(|c, v| c.request = v) task_id(|_c| None) task_name(|_c| None) {
                /// What the client asked for.
                request: NewTask,
            }
            /// After a client enqueued a task.
            1 qtasks_add_task_after_broker qtasks_add_task_after_broker_sync QtasksAddTaskAfterBroker (Qtasks, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The stored `new` record.
                model: &'a TaskRecord,
            }
            /// When a client reads a task record; may replace it.
            2 qtasks_get qtasks_get_sync QtasksGet (Qtasks, Replace, TaskRecord)
                apply(|c, v| c.model = Some(v)) task_id(|c| Some(c.uuid)) task_name(|c| c.model.as_ref().map(|t| t.task_name.as_str())) {
                /// The id looked up.
                uuid: Uuid,
                /// The record found, if any.
                model: Option<TaskRecord>,
            }
            /// When the app is asked to stop.
            3 qtasks_stop qtasks_stop_sync QtasksStop (Qtasks, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When a client pings the workers.
            4 qtasks_ping qtasks_ping_sync QtasksPing (Qtasks, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When a client flushes every key of the app.
            5 qtasks_flush_all qtasks_flush_all_sync QtasksFlushAll (Qtasks, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}

            // ---- broker: the queue ----
            /// When a worker's broker starts listening for tasks.
            6 broker_listen_start broker_listen_start_sync BrokerListenStart (Broker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the broker hands a task it received to the worker; may replace the message.
            7 broker_add_worker broker_add_worker_sync BrokerAddWorker (Broker, Replace, TaskMessage)
                apply(|c, v| c.message = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The message taken from the queue.
                message: TaskMessage,
            }
            /// Before the broker stores and enqueues a task; may replace the `new` record.
            8 broker_add_before broker_add_before_sync BrokerAddBefore (Broker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The record about to be stored.
                model: TaskRecord,
            }
            /// After the broker enqueued a task.
            9 broker_add_after broker_add_after_sync BrokerAddAfter (Broker, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The stored record.
                model: &'a TaskRecord,
            }
            /// When the broker reads a task record; may replace it.
            10 broker_get broker_get_sync BrokerGet (Broker, Replace, TaskRecord)
                apply(|c, v| c.model = Some(v)) task_id(|c| Some(c.uuid)) task_name(|c| c.model.as_ref().map(|t| t.task_name.as_str())) {
                /// The id looked up.
                uuid: Uuid,
                /// The record found, if any.
                model: Option<TaskRecord>,
            }
            /// Before the broker writes a status change; may replace the record written.
            11 broker_update broker_update_sync BrokerUpdate (Broker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The record about to be written.
                model: TaskRecord,
            }
            /// When the broker starts, before the storage.
            12 broker_start broker_start_sync BrokerStart (Broker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the broker stops.
            13 broker_stop broker_stop_sync BrokerStop (Broker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// Before the broker stores a final status; may replace the record.
            14 broker_remove_finished_task broker_remove_finished_task_sync BrokerRemoveFinishedTask (Broker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The final record.
                model: TaskRecord,
            }
            /// When the broker puts back a task whose worker died (backends with leases).
            15 broker_running_older_tasks broker_running_older_tasks_sync BrokerRunningOlderTasks (Broker, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The message put back in the queue.
                message: &'a TaskMessage,
            }
            /// When the broker flushes the app's queue.
            16 broker_flush_all broker_flush_all_sync BrokerFlushAll (Broker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}

            // ---- storage: task records ----
            /// Before a `new` record is stored; may replace it.
            17 storage_add storage_add_sync StorageAdd (Storage, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The record about to be stored.
                model: TaskRecord,
            }
            /// When a record is read and found; may replace it.
            18 storage_get storage_get_sync StorageGet (Storage, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The record read.
                model: TaskRecord,
            }
            /// When every record is listed; may replace the list.
            19 storage_get_all storage_get_all_sync StorageGetAll (Storage, Replace, Vec<TaskRecord>)
                apply(|c, v| c.models = v) task_id(|_c| None) task_name(|_c| None) {
                /// The records read.
                models: Vec<TaskRecord>,
            }
            /// Before a status change is written; may replace the record.
            20 storage_update storage_update_sync StorageUpdate (Storage, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The record about to be written.
                model: TaskRecord,
            }
            /// After a final status was stored.
            21 storage_remove_finished_task storage_remove_finished_task_sync StorageRemoveFinishedTask (Storage, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The final record.
                model: &'a TaskRecord,
            }
            /// When the storage starts.
            22 storage_start storage_start_sync StorageStart (Storage, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the storage stops.
            23 storage_stop storage_stop_sync StorageStop (Storage, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When a worker takes a task, before it is recorded as in flight; may replace the message.
            24 storage_add_process storage_add_process_sync StorageAddProcess (Storage, Replace, TaskMessage)
                apply(|c, v| c.message = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The message taken.
                message: TaskMessage,
            }
            /// When the storage recovers a task left in flight by a dead worker; may replace the message.
            25 storage_running_older_tasks storage_running_older_tasks_sync StorageRunningOlderTasks (Storage, Replace, TaskMessage)
                apply(|c, v| c.message = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The message recovered.
                message: TaskMessage,
            }
            /// When the storage deletes finished records.
            26 storage_delete_finished_tasks storage_delete_finished_tasks_sync StorageDeleteFinishedTasks (Storage, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the storage flushes every record of the app.
            27 storage_flush_all storage_flush_all_sync StorageFlushAll (Storage, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}

            // ---- global_config: shared settings and the worker registry ----
            /// Before a shared setting is written; may replace the value.
            28 global_config_set global_config_set_sync GlobalConfigSet (GlobalConfig, Replace, Value)
                apply(|c, v| c.value = v) task_id(|_c| None) task_name(|_c| None) {
                /// The settings group.
                name: &'a str,
                /// The setting.
                key: &'a str,
                /// The value about to be written.
                value: Value,
            }
            /// When a shared setting is read; may replace the value.
            29 global_config_get global_config_get_sync GlobalConfigGet (GlobalConfig, Replace, Value)
                apply(|c, v| c.value = Some(v)) task_id(|_c| None) task_name(|_c| None) {
                /// The settings group.
                name: &'a str,
                /// The setting.
                key: &'a str,
                /// The value read, if any.
                value: Option<Value>,
            }
            /// When a settings group is read; may replace it.
            30 global_config_get_all global_config_get_all_sync GlobalConfigGetAll (GlobalConfig, Replace, Map<String, Value>)
                apply(|c, v| c.values = v) task_id(|_c| None) task_name(|_c| None) {
                /// The settings group.
                name: &'a str,
                /// The values read.
                values: Map<String, Value>,
            }
            /// When settings are read by pattern; may replace them.
            31 global_config_get_match global_config_get_match_sync GlobalConfigGetMatch (GlobalConfig, Replace, Map<String, Value>)
                apply(|c, v| c.values = v) task_id(|_c| None) task_name(|_c| None) {
                /// The pattern.
                pattern: &'a str,
                /// The values read.
                values: Map<String, Value>,
            }
            /// When the global config starts.
            32 global_config_start global_config_start_sync GlobalConfigStart (GlobalConfig, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the global config stops.
            33 global_config_stop global_config_stop_sync GlobalConfigStop (GlobalConfig, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the worker heartbeat starts.
            34 global_config_set_status global_config_set_status_sync GlobalConfigSetStatus (GlobalConfig, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}

            // ---- worker ----
            /// When the worker queues a task it received; may replace the message.
            35 worker_add worker_add_sync WorkerAdd (Worker, Replace, TaskMessage)
                apply(|c, v| c.message = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The message received.
                message: TaskMessage,
            }
            /// When the worker starts, after every plugin started.
            36 worker_start worker_start_sync WorkerStart (Worker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {
                /// How many tasks the worker runs at once.
                max_tasks_process: usize,
            }
            /// When the worker stops, after in-flight tasks finished.
            37 worker_stop worker_stop_sync WorkerStop (Worker, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// Before a task's `process` status is written; may replace that record.
            38 worker_execute_before worker_execute_before_sync WorkerExecuteBefore (Worker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The `process` record about to be written.
                model: TaskRecord,
            }
            /// Before the executor runs a task.
            39 worker_run_task_before worker_run_task_before_sync WorkerRunTaskBefore (Worker, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
            }
            /// When a task with retries left failed; may replace the error record.
            40 worker_task_error_retry worker_task_error_retry_sync WorkerTaskErrorRetry (Worker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message that failed.
                message: &'a TaskMessage,
                /// The `error` record.
                model: TaskRecord,
            }
            /// Before the worker stores a final status; may replace the record.
            41 worker_remove_finished_task worker_remove_finished_task_sync WorkerRemoveFinishedTask (Worker, Replace, TaskRecord)
                apply(|c, v| c.model = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition; `None` for an unknown task name.
                task: Option<&'a TaskInfo>,
                /// The message that ran.
                message: &'a TaskMessage,
                /// The final record.
                model: TaskRecord,
            }
            /// After a task's final status was stored.
            42 worker_execute_after worker_execute_after_sync WorkerExecuteAfter (Worker, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.model.uuid)) task_name(|c| Some(c.model.task_name.as_str())) {
                /// The task's definition; `None` for an unknown task name.
                task: Option<&'a TaskInfo>,
                /// The final record.
                model: &'a TaskRecord,
            }

            // ---- task_executor: one task's pipeline ----
            /// Before and after the task runs (the middleware points).
            43 task_executor_middlewares_execute task_executor_middlewares_execute_sync TaskExecutorMiddlewaresExecute (TaskExecutor, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// Before or after the run.
                phase: Phase,
            }
            /// Before the arguments are decoded; may replace them (JSON).
            44 task_executor_args_replace task_executor_args_replace_sync TaskExecutorArgsReplace (TaskExecutor, Replace, Value)
                apply(|c, v| c.args = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The arguments about to be decoded.
                args: Value,
            }
            /// Right before the task function is called.
            45 task_executor_before_execute task_executor_before_execute_sync TaskExecutorBeforeExecute (TaskExecutor, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
            }
            /// After the task function returned a value; may replace the result (JSON).
            46 task_executor_run_task task_executor_run_task_sync TaskExecutorRunTask (TaskExecutor, Replace, Value)
                apply(|c, v| c.result = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The result.
                result: Value,
            }
            /// After a stream task yielded all its items; may replace the collected list.
            47 task_executor_run_task_gen task_executor_run_task_gen_sync TaskExecutorRunTaskGen (TaskExecutor, Replace, Vec<Value>)
                apply(|c, v| c.results = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The items collected.
                results: Vec<Value>,
            }
            /// When a task ended with a [`PluginError`](crate::PluginError): a handler that returns a
            /// value rescues the task, which ends `success` with it.
            48 task_executor_run_task_trigger_error task_executor_run_task_trigger_error_sync TaskExecutorRunTaskTriggerError (TaskExecutor, Intercept, Value)
                apply(|c, v| c.result = Some(v)) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The error the task ended with.
                error: &'a PluginError,
                /// The rescue value returned by an earlier handler, if any.
                result: Option<Value>,
            }
            /// After the task function returned (value or error).
            49 task_executor_after_execute task_executor_after_execute_sync TaskExecutorAfterExecute (TaskExecutor, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
            }
            /// After a successful run; may replace the result (JSON).
            50 task_executor_after_execute_result_replace task_executor_after_execute_result_replace_sync TaskExecutorAfterExecuteResultReplace (TaskExecutor, Replace, Value)
                apply(|c, v| c.result = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The result.
                result: Value,
            }
            /// When the result is encoded for storage; may replace the stored value.
            51 task_executor_decode task_executor_decode_sync TaskExecutorDecode (TaskExecutor, Replace, Value)
                apply(|c, v| c.result = v) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message being run.
                message: &'a TaskMessage,
                /// The value about to be stored.
                result: Value,
            }
            /// When the executor is done with a task, on every path (success, error, cancel).
            52 task_executor_task_close task_executor_task_close_sync TaskExecutorTaskClose (TaskExecutor, Observe, ())
                apply(|_c, _v| ()) task_id(|c| Some(c.message.uuid)) task_name(|c| Some(c.message.task_name.as_str())) {
                /// The task's definition.
                task: &'a TaskInfo,
                /// The message that ran.
                message: &'a TaskMessage,
                /// The status the task ends with.
                status: TaskStatus,
            }

            // ---- starter and stats ----
            /// When a worker process starts, before any plugin's `start`.
            53 starter_start starter_start_sync StarterStart (Starter, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When a worker process stops, before any plugin's `stop`.
            54 starter_stop starter_stop_sync StarterStop (Starter, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
            /// When the app is inspected.
            55 stats_inspect stats_inspect_sync StatsInspect (Stats, Observe, ()) apply(|_c, _v| ()) task_id(|_c| None) task_name(|_c| None) {}
        }
    };
}
pub(crate) use trigger_table;
