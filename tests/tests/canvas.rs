//! Chains and groups (QTasks §4.2; behaviours E12 and E13), on the memory
//! backend and on Redis.

mod support;

use qtasks::{Backend, ChainError, GroupError, MemberError, QueueTasks, TaskRecord, TaskStatus, call, json, task};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn divide(a: i64, b: i64) -> Result<i64, std::io::Error> {
    if b == 0 {
        return Err(std::io::Error::other("division by zero"));
    }
    Ok(a / b)
}

/// Returns `value` after `ms` milliseconds.
#[task]
async fn late(ms: u64, value: i64) -> i64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    value
}

/// Never finishes within a test.
#[task]
async fn hang(_previous: i64) -> i64 {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    0
}

fn memory_app(name: &str) -> QueueTasks<impl qtasks::TaskSet, (), impl Backend> {
    QueueTasks::builder(name).tasks::<(Add, Divide, Late, Hang)>().build().unwrap()
}

fn results(records: &[TaskRecord]) -> Vec<i64> {
    records.iter().map(|r| r.result_as::<i64>().expect("a result").expect("an integer")).collect()
}

/// E13: chain(add(2, 2), add(4), add(8)) gives 4, 8, 16.
async fn check_e13<T: qtasks::TaskSet, C: qtasks::PluginChain, B: Backend>(app: &QueueTasks<T, C, B>) {
    let chain = app.chain([Add::call(2, 2).untyped(), call("add", json!([4])), call("add", json!([8]))]);
    let records = chain.run(WAIT).await.unwrap();
    assert_eq!(results(&records), [4, 8, 16]);
    assert!(records.iter().all(|r| r.status == TaskStatus::Success));
    // The previous result is the last positional argument.
    let args: Vec<_> = records.iter().map(|r| r.args.clone()).collect();
    assert_eq!(args, [json!([2, 2]), json!([4, 4]), json!([8, 8])]);
    assert_eq!(chain.results::<i64>(WAIT).await.unwrap(), [4, 8, 16]);
}

/// E12: four `add` calls in a group give 5, 7, 9, 13.
async fn check_e12<T: qtasks::TaskSet, C: qtasks::PluginChain, B: Backend>(app: &QueueTasks<T, C, B>) {
    let group = app.group([
        Add::call(2, 3).untyped(),
        Add::call(3, 4).untyped(),
        Add::call(4, 5).untyped(),
        call("add", json!([6, 7])),
    ]);
    let records = group.run(WAIT).await.unwrap();
    assert_eq!(results(&records), [5, 7, 9, 13]);
    assert_eq!(group.results::<i64>(WAIT).await.unwrap(), [5, 7, 9, 13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_e13_on_memory() {
    let app = memory_app("chain_e13_on_memory");
    let worker = app.worker().start().await.unwrap();
    check_e13(&app).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_e12_on_memory() {
    let app = memory_app("group_e12_on_memory");
    let worker = app.worker().start().await.unwrap();
    check_e12(&app).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn chain_e13_and_group_e12_on_redis() {
    let name = format!("qtasks-test-canvas-{}", uuid::Uuid::new_v4());
    let Some(backend) = support::connect_redis("canvas", &name).await else { return };
    let app = QueueTasks::builder(name).tasks::<(Add, Divide)>().backend(backend).build().unwrap();
    app.flush_all().await.unwrap();
    let worker = app.worker().start().await.unwrap();
    check_e13(&app).await;
    check_e12(&app).await;
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_results_keep_the_order_given_not_the_finish_order() {
    let app = memory_app("group_results_keep_the_order_given_not_the_finish_order");
    let worker = app.worker().start().await.unwrap();
    let group = app.group([Late::call(300, 1).untyped(), Late::call(0, 2).untyped(), Late::call(100, 3).untyped()]);
    assert_eq!(group.results::<i64>(WAIT).await.unwrap(), [1, 2, 3]);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_from_a_spawned_task_and_keeps_step_priorities() {
    let app = memory_app("chain_runs_from_a_spawned_task_and_keeps_step_priorities");
    let worker = app.worker().start().await.unwrap();
    let chain = app.chain([Add::call(1, 1).untyped().priority(3), call("add", [10]).priority(7)]);
    let records = tokio::spawn(async move { chain.run(WAIT).await }).await.unwrap().unwrap();
    assert_eq!(results(&records), [2, 12]);
    assert_eq!(records.iter().map(|r| r.priority).collect::<Vec<_>>(), [3, 7]);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_stops_at_the_failed_step_and_reports_it() {
    let app = memory_app("chain_stops_at_the_failed_step_and_reports_it");
    app.flush_all().await.unwrap();
    let worker = app.worker().start().await.unwrap();
    // add(0, 0) = 0, then divide(10, 0) fails, so add(1, _) is never enqueued.
    let chain = app.chain([Add::call(0, 0).untyped(), call("divide", json!([10])), call("add", json!([1]))]);
    let err = chain.run(WAIT).await.unwrap_err();
    let ChainError::StepFailed { index, ref task_name, uuid, status, ref error, ref records } = err else {
        panic!("expected StepFailed, got {err:?}");
    };
    assert_eq!((index, task_name.as_str(), status), (1, "divide", TaskStatus::Error));
    assert_eq!(error.as_deref(), Some("division by zero"));
    assert_eq!(records.len(), 2, "the records of the steps that ran");
    assert_eq!(records[0].result, Some(json!(0)));
    assert_eq!((records[1].uuid, &records[1].args), (uuid, &json!([10, 0])));
    assert_eq!(err.index(), 1);
    let message = err.to_string();
    assert!(message.contains("step 1 (`divide`") && message.contains("division by zero"), "{message}");

    let all = app.get_all().await.unwrap();
    let mut names: Vec<_> = all.iter().map(|r| r.task_name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["add", "divide"], "the step after the failure was never enqueued");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reports_each_failing_member_and_keeps_the_others() {
    let app = memory_app("group_reports_each_failing_member_and_keeps_the_others");
    let worker = app.worker().start().await.unwrap();
    let group = app.group([Add::call(1, 2).untyped(), Divide::call(1, 0).untyped(), Add::call(3, 4).untyped()]);
    let err = group.run(WAIT).await.unwrap_err();
    let GroupError::Incomplete { ref members } = err else { panic!("expected Incomplete, got {err:?}") };
    assert_eq!(members.len(), 3);
    assert_eq!(members[0].as_ref().unwrap().result, Some(json!(3)));
    assert_eq!(members[2].as_ref().unwrap().result, Some(json!(7)));
    match &members[1] {
        Err(MemberError::Failed { index: 1, record, .. }) => {
            assert_eq!((record.task_name.as_str(), record.status), ("divide", TaskStatus::Error));
            assert_eq!(record.error.as_deref(), Some("division by zero"));
        }
        other => panic!("expected member 1 to have failed, got {other:?}"),
    }
    assert_eq!(err.failures().map(MemberError::index).collect::<Vec<_>>(), [1]);
    assert!(err.unfinished().is_empty());
    let message = err.to_string();
    assert!(message.contains("1 of 3") && message.contains("member 1 (`divide`"), "{message}");
    worker.shutdown().await;
}

#[tokio::test]
async fn chain_args_that_cannot_take_the_previous_result_fail_before_enqueueing() {
    let app = memory_app("chain_args_that_cannot_take_the_previous_result_fail_before_enqueueing");
    app.flush_all().await.unwrap();
    // A map as the first step is fine (by parameter name); a later step needs an array.
    let chain = app.chain([call("add", json!({"a": 1, "b": 2})), call("add", json!({"a": 1}))]);
    let err = chain.run(WAIT).await.unwrap_err();
    let ChainError::InvalidArgs { index, ref task_name, ref reason } = err else { panic!("got {err:?}") };
    assert_eq!((index, task_name.as_str()), (1, "add"));
    assert!(reason.contains("JSON array"), "{reason}");
    assert!(err.to_string().contains("nothing was enqueued"));
    assert!(err.records().is_empty());
    assert!(app.get_all().await.unwrap().is_empty(), "nothing was enqueued");
}

#[tokio::test]
async fn unencodable_group_args_fail_before_enqueueing() {
    let app = memory_app("unencodable_group_args_fail_before_enqueueing");
    app.flush_all().await.unwrap();
    let bad: HashMap<(i32, i32), i32> = HashMap::from([((1, 2), 3)]);
    let err = app.group([Add::call(1, 2).untyped(), call("add", bad)]).run(WAIT).await.unwrap_err();
    assert!(matches!(err, GroupError::InvalidArgs { index: 1, .. }), "{err:?}");
    assert!(app.get_all().await.unwrap().is_empty(), "nothing was enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_timeout_names_the_unfinished_step() {
    let app = memory_app("chain_timeout_names_the_unfinished_step");
    let worker = app.worker().start().await.unwrap();
    let chain = app.chain([Add::call(1, 2).untyped(), call("hang", json!([])), call("add", json!([1]))]);
    let err = chain.run(Duration::from_secs(2)).await.unwrap_err();
    let ChainError::Timeout { index, ref task_name, uuid, ref records } = err else { panic!("got {err:?}") };
    assert_eq!((index, task_name.as_str()), (1, "hang"));
    assert_eq!(results(records), [3], "the steps that finished");
    assert_eq!(app.get(uuid).await.unwrap().unwrap().task_name, "hang");
    assert!(err.to_string().contains("step 1 (`hang`"), "{err}");
    drop(worker); // `hang` never ends: don't wait for it
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_timeout_names_the_unfinished_members() {
    let app = memory_app("group_timeout_names_the_unfinished_members");
    let worker = app.worker().start().await.unwrap();
    let group = app.group([Add::call(1, 2).untyped(), Hang::call(0).untyped(), Add::call(3, 4).untyped()]);
    let err = group.run(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.unfinished(), [1]);
    let GroupError::Incomplete { ref members } = err else { panic!("got {err:?}") };
    assert!(members[0].is_ok() && members[2].is_ok());
    assert!(matches!(&members[1], Err(MemberError::Unfinished { index: 1, task_name, .. }) if task_name == "hang"));
    let message = err.to_string();
    assert!(message.contains("timed out") && message.contains("member 1 (`hang`"), "{message}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_results_report_a_result_of_the_wrong_type() {
    let app = memory_app("typed_results_report_a_result_of_the_wrong_type");
    let worker = app.worker().start().await.unwrap();
    let err = app.chain([Add::call(1, 2).untyped()]).results::<String>(WAIT).await.unwrap_err();
    assert!(matches!(err, ChainError::Decode { index: 0, .. }), "{err:?}");
    assert_eq!(results(err.records()), [3]);
    assert!(app.chain(Vec::new()).run(WAIT).await.unwrap().is_empty(), "an empty chain has no records");
    assert!(app.group(Vec::new()).run(WAIT).await.unwrap().is_empty(), "an empty group has no records");
    worker.shutdown().await;
}
