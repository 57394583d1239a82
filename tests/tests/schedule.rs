//! Schedules (QTasks's Timer): interval and cron entries enqueue tasks that
//! workers run; missed ticks are skipped; failures are counted and the
//! schedule goes on; shutdown stops it.

mod support;

use qtasks::runtime::schedule::EntryStats;
use qtasks::{
    Backend, PluginChain, QueueTasks, ScheduleEntry, ScheduleError, Scheduler, TaskRecord, TaskSet, TaskStatus, call,
    json, task,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = support::HANG;

#[task]
async fn tick(n: i64) -> i64 {
    n
}

/// Waits for every record of the app to finish and returns them.
async fn finished_records<T: TaskSet, C: PluginChain, B: Backend>(app: &QueueTasks<T, C, B>) -> Vec<TaskRecord> {
    let mut out = Vec::new();
    for task in app.get_all().await.unwrap() {
        out.push(app.wait(task.uuid, WAIT).await.expect("a scheduled task finished"));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn an_interval_entry_enqueues_repeatedly_and_a_worker_runs_the_tasks() {
    let app = QueueTasks::builder("schedule_interval").task::<Tick>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_secs(1), call("tick", [7])).unwrap())
        .start();

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let stats = schedule.shutdown().await;
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].fired, stats[0].failed, stats[0].skipped), (3, 0, 0), "{stats:?}");
    assert_eq!(stats[0].description, "every 1s: tick");
    assert_eq!(stats[0].task_name, "tick");

    let records = finished_records(&app).await;
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.result, Some(json!(7)));
        assert_eq!(record.extra.get("schedule"), Some(&json!("every 1s: tick")), "traceable to its entry");
    }
    worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_schedule_that_falls_behind_skips_missed_ticks_instead_of_bursting() {
    let app = QueueTasks::builder("schedule_behind").task::<Tick>().build().unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_secs(1), call("tick", [1])).unwrap())
        .start();
    tokio::task::yield_now().await;

    // The clock jumps 10.5 s at once, as after a stall: ticks 1 to 10 are past.
    tokio::time::advance(Duration::from_millis(10_500)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = schedule.stats();
    assert_eq!((stats[0].fired, stats[0].skipped), (1, 9), "one late enqueue, the rest skipped: {stats:?}");
    assert_eq!(app.get_all().await.unwrap().len(), 1);

    // Then back on the original grid: the tick at 11 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = schedule.shutdown().await;
    assert_eq!((stats[0].fired, stats[0].skipped), (2, 9), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_enqueueing() {
    let app = QueueTasks::builder("schedule_shutdown").task::<Tick>().build().unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_secs(1), call("tick", [1])).unwrap())
        .start();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = schedule.shutdown().await;
    assert_eq!(stats[0].fired, 2);

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(app.get_all().await.unwrap().len(), 2, "nothing enqueued after shutdown");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_schedule() {
    let app = QueueTasks::builder("schedule_drop").task::<Tick>().build().unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_secs(1), call("tick", [1])).unwrap())
        .start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(schedule);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(app.get_all().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn priority_and_name_apply_to_their_own_entry_and_entries_run_independently() {
    let app = QueueTasks::builder("schedule_entries").task::<Tick>().build().unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_secs(1), call("tick", [1])).unwrap())
        .entry(
            ScheduleEntry::every(Duration::from_secs(2), call("tick", json!({"n": 2})).priority(-3))
                .unwrap()
                .name("nightly report"),
        )
        .start();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let stats = schedule.shutdown().await;
    let counts: Vec<(&str, u64)> = stats.iter().map(|s| (s.description.as_str(), s.fired)).collect();
    assert_eq!(counts, [("every 1s: tick", 4), ("nightly report", 2)]);

    let records = app.get_all().await.unwrap();
    let named: Vec<&TaskRecord> =
        records.iter().filter(|r| r.extra.get("schedule") == Some(&json!("nightly report"))).collect();
    assert_eq!(named.len(), 2);
    assert!(named.iter().all(|r| r.priority == -3 && r.args == json!({"n": 2})));
    assert!(records.iter().filter(|r| r.args == json!([1])).all(|r| r.priority == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_entry_with_seconds_fires_on_the_wall_clock() {
    let app = QueueTasks::builder("schedule_cron").task::<Tick>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let started = qtasks::model::now();
    let schedule =
        Scheduler::new(app.clone()).entry(ScheduleEntry::cron("*/1 * * * * *", call("tick", [3])).unwrap()).start();
    // It goes on firing (a loaded machine may skip a second, not stop it)…
    wait_for(&schedule, |s| s.fired >= 3).await;
    let stats = schedule.shutdown().await;
    let ended = qtasks::model::now();
    // …at most once for each whole second of the wall clock that began meanwhile.
    let seconds = (ended.floor() - started.floor()) as u64;
    assert!(stats[0].fired <= seconds, "{} fires in {seconds} whole seconds: {stats:?}", stats[0].fired);
    assert_eq!(stats[0].failed, 0);

    let records = finished_records(&app).await;
    assert_eq!(records.len() as u64, stats[0].fired);
    for record in &records {
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.extra.get("schedule"), Some(&json!("cron \"*/1 * * * * *\" (UTC): tick")));
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_entry_in_a_time_zone_fires_on_the_wall_clock() {
    let app = QueueTasks::builder("schedule_cron_zone").task::<Tick>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let started = qtasks::model::now();
    // India is UTC+05:30: a whole second there is a whole second in UTC.
    let entry = ScheduleEntry::cron_in("*/1 * * * * *", "Asia/Kolkata", call("tick", [4])).unwrap();
    let schedule = Scheduler::new(app.clone()).entry(entry).start();
    wait_for(&schedule, |s| s.fired >= 3).await;
    let stats = schedule.shutdown().await;
    let ended = qtasks::model::now();
    let seconds = (ended.floor() - started.floor()) as u64;
    assert!(stats[0].fired <= seconds, "{} fires in {seconds} whole seconds: {stats:?}", stats[0].fired);
    assert_eq!(stats[0].failed, 0);
    assert_eq!(stats[0].description, "cron \"*/1 * * * * *\" (Asia/Kolkata): tick");

    let records = finished_records(&app).await;
    assert_eq!(records.len() as u64, stats[0].fired);
    for record in &records {
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.result, Some(json!(4)));
        assert_eq!(record.extra.get("schedule"), Some(&json!("cron \"*/1 * * * * *\" (Asia/Kolkata): tick")));
        // The tick is the occurrence's instant in Unix milliseconds: a whole second.
        let tick: u64 = record.extra["schedule_tick"].as_str().unwrap().parse().unwrap();
        assert_eq!(tick % 1000, 0, "{tick}");
    }
    worker.shutdown().await;
}

/// `secs` seconds after the Unix epoch.
fn unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn next_after_applies_the_daylight_saving_rules() {
    let nightly = ScheduleEntry::cron_in("30 2 * * *", "Europe/Paris", call("tick", [1])).unwrap();
    // Spring forward, 2026-03-29: 02:30 does not exist and fires at 03:00
    // summer time, 01:00 UTC.
    assert_eq!(nightly.next_after(unix(1_774_742_400)), Some(unix(1_774_746_000))); // from 00:00 UTC
    // Fall back, 2026-10-25: 02:30 happens twice and fires at the first,
    // 00:30 UTC; the next fire is 02:30 winter time on the 26th, 01:30 UTC.
    assert_eq!(nightly.next_after(unix(1_792_886_400)), Some(unix(1_792_888_200))); // from 00:00 UTC
    assert_eq!(nightly.next_after(unix(1_792_888_200)), Some(unix(1_792_978_200)));

    // Hourly: 02:00 in Paris is skipped in March (01:00 then 03:00, one hour
    // apart) and happens twice in October (one hour apart too).
    let hourly = ScheduleEntry::cron_in("0 * * * *", "Europe/Paris", call("tick", [1])).unwrap();
    assert_eq!(hourly.next_after(unix(1_774_742_400)), Some(unix(1_774_746_000))); // 01:00 CET -> 03:00 CEST
    assert_eq!(hourly.next_after(unix(1_792_886_400)), Some(unix(1_792_890_000))); // 02:00 CEST -> 02:00 CET

    // UTC, by default: the same time every day.
    let utc = ScheduleEntry::cron("30 2 * * *", call("tick", [1])).unwrap();
    assert_eq!(utc.next_after(unix(1_774_742_400)), Some(unix(1_774_742_400 + 9000)));
    assert_eq!(utc.next_after(unix(1_792_886_400)), Some(unix(1_792_886_400 + 9000)));
    // An interval entry has no fixed next time.
    assert_eq!(ScheduleEntry::every(Duration::from_secs(1), call("tick", [1])).unwrap().next_after(unix(0)), None);
}

#[test]
fn a_zoned_entry_names_its_zone_and_an_unknown_zone_is_refused() {
    let entry = ScheduleEntry::cron_in("0 3 * * *", "Europe/Paris", call("tick", ())).unwrap();
    assert_eq!(entry.description(), "cron \"0 3 * * *\" (Europe/Paris): tick");
    let utc = ScheduleEntry::cron("0 3 * * *", call("tick", ())).unwrap();
    assert_eq!(utc.description(), "cron \"0 3 * * *\" (UTC): tick");
    let named = ScheduleEntry::cron_in("0 3 * * *", "America/New_York", call("tick", ())).unwrap().name("nightly");
    assert_eq!(named.description(), "nightly");

    let error = ScheduleEntry::cron_in("0 3 * * *", "Europe/Pariss", call("tick", ())).expect_err("refused");
    assert!(
        matches!(&error, ScheduleError::UnknownTimeZone { zone, suggestion: Some(s), .. } if zone == "Europe/Pariss" && s == "Europe/Paris"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`Europe/Pariss`") && message.contains("task `tick`"), "{message}");
    assert!(message.contains("did you mean `Europe/Paris`?"), "{message}");
    let message = ScheduleEntry::cron_in("0 3 * * *", "Atlantis/Main", call("tick", ())).unwrap_err().to_string();
    assert!(message.contains("unknown time zone `Atlantis/Main`") && !message.contains("did you mean"), "{message}");
}

#[test]
fn valid_cron_expressions_are_accepted() {
    for expression in ["0 3 * * *", "*/15 * * * * *", "0 0 9 * * MON-FRI", "@hourly", "0 0 1,15 JAN-JUN *"] {
        let entry = ScheduleEntry::cron(expression, call("tick", ()));
        assert!(entry.is_ok(), "{expression}: {:?}", entry.err());
    }
}

#[test]
fn bad_cron_expressions_are_refused_naming_the_expression_and_the_problem() {
    let refuse = |expression: &str| match ScheduleEntry::cron(expression, call("tick", ())) {
        Err(error @ ScheduleError::Cron { .. }) => error.to_string(),
        Err(other) => panic!("{expression}: wrong error {other}"),
        Ok(_) => panic!("{expression} was accepted"),
    };

    let message = refuse("* * *");
    assert!(message.contains("`* * *`") && message.contains("task `tick`"), "{message}");
    assert!(message.contains("expected 5 fields") && message.contains("found 3"), "{message}");
    assert!(refuse("0 0 0 * * * 2030").contains("found 7"));

    let message = refuse("61 * * * * *");
    assert!(message.contains("`61 * * * * *`") && message.contains("61"), "{message}");
    assert!(message.contains("second"), "names the field: {message}");

    let message = refuse("0 25 * * *");
    assert!(message.contains("hour"), "names the field: {message}");

    let message = refuse("0 0 * * BLURSDAY");
    assert!(message.contains("`0 0 * * BLURSDAY`") && message.contains("day-of-week"), "{message}");

    assert!(refuse("*/0 * * * *").contains("minute field `*/0`"));
    assert!(refuse("@fortnightly").contains("unknown nickname `@fortnightly`"));

    let message = refuse("0 0 30 2 *");
    assert!(message.contains("matches no time"), "{message}");
}

#[test]
fn a_zero_interval_is_refused() {
    let error = ScheduleEntry::every(Duration::ZERO, call("tick", ())).expect_err("refused");
    assert!(matches!(error, ScheduleError::ZeroInterval { .. }));
    assert!(error.to_string().contains("task `tick`") && error.to_string().contains("zero"), "{error}");
}

#[tokio::test]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_an_interval_entry_enqueues_and_a_worker_runs_the_tasks() {
    let name = format!("schedule_redis-{}", qtasks::Uuid::new_v4());
    let Some(backend) = support::connect_redis("schedule on Redis", &name).await else { return };
    let app = QueueTasks::builder(name).task::<Tick>().backend(backend).build().unwrap();
    app.flush_all().await.unwrap();
    let worker = app.worker().start().await.unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_millis(200), call("tick", [5])).unwrap())
        .start();

    let fired = wait_for(&schedule, |s| s.fired >= 3).await;
    let stats = schedule.shutdown().await;
    assert!(stats[0].fired >= fired.fired && stats[0].failed == 0, "{stats:?}");

    let records = finished_records(&app).await;
    assert_eq!(records.len() as u64, stats[0].fired);
    for record in &records {
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.result, Some(json!(5)));
        assert_eq!(record.extra.get("schedule"), Some(&json!("every 200ms: tick")));
    }
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

#[tokio::test]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_a_failing_enqueue_is_counted_and_the_schedule_goes_on() {
    let name = format!("schedule_redis_fail-{}", qtasks::Uuid::new_v4());
    let Some(backend) = support::connect_redis("schedule failures on Redis", &name).await else {
        return;
    };
    let seq = format!("{}seq", backend.key_prefix());
    let app = QueueTasks::builder(name).task::<Tick>().backend(backend).build().unwrap();
    app.flush_all().await.unwrap();
    let mut conn = redis::Client::open(support::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();

    // The enqueue counter holds a non-number: every enqueue fails in Redis.
    let () = redis::cmd("SET").arg(&seq).arg("not a number").query_async(&mut conn).await.unwrap();
    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_millis(100), call("tick", [1])).unwrap())
        .start();
    let failing = wait_for(&schedule, |s| s.failed >= 3).await;
    assert_eq!(failing.fired, 0);
    assert!(failing.last_error.as_deref().is_some_and(|e| e.contains("redis")), "{failing:?}");

    // The backend recovers: the same schedule enqueues again.
    let () = redis::cmd("DEL").arg(&seq).query_async(&mut conn).await.unwrap();
    let recovered = wait_for(&schedule, |s| s.fired >= 2).await;
    assert!(recovered.failed >= 3);
    let stats = schedule.shutdown().await;
    assert_eq!(app.get_all().await.unwrap().len() as u64, stats[0].fired);
    app.flush_all().await.unwrap();
}

/// Polls the first entry's stats until `done`, for at most [`WAIT`].
async fn wait_for(schedule: &qtasks::ScheduleHandle, done: impl Fn(&EntryStats) -> bool) -> EntryStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = schedule.stats().remove(0);
        if done(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "schedule did not get there in {WAIT:?}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
