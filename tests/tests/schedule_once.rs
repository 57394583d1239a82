//! Several processes running the same schedule on one backend enqueue each
//! tick once: three schedulers, started one after another, share the ticks
//! instead of tripling them (the claim is made in the backend, so it holds
//! whichever process or connection it comes from).

mod support;

use qtasks::{Backend, QueueTasks, ScheduleEntry, Scheduler, call, task};
use std::collections::BTreeSet;
use std::time::Duration;

#[task]
async fn beat() {}

async fn three_schedulers_enqueue_each_tick_once<B: Backend + Clone>(backend: B) -> Result<(), String> {
    let name = support::app_name("schedule-once", &backend);
    // Three "processes": three apps of the same name on the backend (on
    // Redis the harness gives each test its own server-side namespace).
    let apps: Vec<_> = (0..3)
        .map(|_| QueueTasks::builder(name.as_str()).task::<Beat>().backend(backend.clone()).build().unwrap())
        .collect();
    let period = Duration::from_millis(100);
    let handles: Vec<_> = apps
        .iter()
        .map(|app| Scheduler::new(app).entry(ScheduleEntry::every(period, call("beat", ())).unwrap()).start())
        .collect();
    // Until at least 10 ticks were enqueued (no worker runs them).
    let deadline = tokio::time::Instant::now() + support::HANG;
    while apps[0].queue_stats().await.map_err(|e| e.to_string())?.queued < 10 {
        assert!(tokio::time::Instant::now() < deadline, "the schedules never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fired = 0;
    let mut elsewhere = 0;
    for handle in handles {
        let stats = handle.shutdown().await;
        fired += stats[0].fired;
        elsewhere += stats[0].claimed_elsewhere;
    }
    let records = apps[0].get_all().await.map_err(|e| e.to_string())?;
    let ticks: Vec<_> = records.iter().map(|r| r.extra["schedule_tick"].as_str().unwrap().to_owned()).collect();
    let distinct: BTreeSet<_> = ticks.iter().collect();
    assert_eq!(ticks.len() as u64, fired, "one task per fire");
    assert_eq!(distinct.len(), ticks.len(), "a tick was enqueued twice: {ticks:?}");
    assert!(elsewhere > 0, "the schedulers never met on a tick");
    apps[0].flush_all().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The same with a cron entry in a time zone: each occurrence (an instant)
/// is enqueued once.
async fn three_schedulers_enqueue_each_zoned_cron_tick_once<B: Backend + Clone>(backend: B) -> Result<(), String> {
    let name = support::app_name("schedule-once-cron", &backend);
    let apps: Vec<_> = (0..3)
        .map(|_| QueueTasks::builder(name.as_str()).task::<Beat>().backend(backend.clone()).build().unwrap())
        .collect();
    let entry = || ScheduleEntry::cron_in("*/1 * * * * *", "Europe/Paris", call("beat", ())).unwrap();
    let handles: Vec<_> = apps.iter().map(|app| Scheduler::new(app).entry(entry()).start()).collect();
    let deadline = tokio::time::Instant::now() + support::HANG;
    while apps[0].queue_stats().await.map_err(|e| e.to_string())?.queued < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the schedules never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut fired, mut elsewhere) = (0, 0);
    for handle in handles {
        let stats = handle.shutdown().await;
        fired += stats[0].fired;
        elsewhere += stats[0].claimed_elsewhere;
    }
    let records = apps[0].get_all().await.map_err(|e| e.to_string())?;
    let ticks: Vec<_> = records.iter().map(|r| r.extra["schedule_tick"].as_str().unwrap().to_owned()).collect();
    let distinct: BTreeSet<_> = ticks.iter().collect();
    assert_eq!(ticks.len() as u64, fired, "one task per fire");
    assert_eq!(distinct.len(), ticks.len(), "a tick was enqueued twice: {ticks:?}");
    assert!(elsewhere > 0, "the schedulers never met on a tick");
    assert!(records.iter().all(|r| r.extra["schedule"] == "cron \"*/1 * * * * *\" (Europe/Paris): beat"));
    apps[0].flush_all().await.map_err(|e| e.to_string())?;
    Ok(())
}

support::on_both_backends!(
    "qtasks-test-schedule-once": three_schedulers_enqueue_each_tick_once three_schedulers_enqueue_each_zoned_cron_tick_once
);
