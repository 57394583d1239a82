//! Distributed runs against a real Redis server (`QTASKS_REDIS_URL`, or
//! redis://127.0.0.1:6379): worker and client processes (the
//! `qtasks-test-worker` binary of this package), a worker killed with
//! SIGKILL, connections killed with `CLIENT KILL`. Without a reachable
//! server the tests are ignored (see `tests/build.rs`), except under CI
//! (`CI` set), where they fail.
//!
//! Each test uses an app name of its own and deletes its keys at the end
//! (after a failure they are left for inspection).
//!
//! The connection-killing test kills only its own connections: those of a
//! Redis user it creates ([`support::TestUser`]). Every command these tests
//! send is retried ([`support::retry`]), as the worker and client processes do.

mod support;

use qtasks::{QueueTasks, RedisBackend, TaskStatus, Uuid, WaitError, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::procs::{Proc, delete_runs, run_keys, runs};
use support::{query, retry};

/// Both tests load a small machine: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn url() -> String {
    support::redis_url()
}

/// The server's URL, or `None` (test skipped) without a server.
async fn server() -> Option<String> {
    let url = url();
    let ping = async {
        let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let error = match tokio::time::timeout(Duration::from_secs(15), ping).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connecting timed out".to_owned(),
    };
    support::unreachable("distributed", &url, &error);
    None
}

/// The ids of the workers the registry lists.
async fn listed<T: qtasks::TaskSet, C: qtasks::PluginChain>(app: &QueueTasks<T, C, RedisBackend>) -> Vec<String> {
    retry("listing workers", async || app.workers().await).await.into_iter().map(|w| w.id).collect()
}

/// Takes in a line of the client: `TASK {n} {uuid}`, `DONE …`.
fn absorb(line: String, uuids: &mut [Option<Uuid>], done: &mut Option<String>) {
    let mut words = line.split(' ');
    match words.next() {
        Some("TASK") => {
            let n: usize = words.next().unwrap().parse().unwrap();
            uuids[n] = Some(words.next().unwrap().parse().unwrap());
        }
        Some("DONE") => *done = Some(line),
        _ => {}
    }
}

/// The id in a `READY {id} {pid}` line.
fn ready_id(line: &str) -> String {
    line.split(' ').nth(1).expect("READY {id} {pid}").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn two_workers_and_a_sigkill_lose_nothing() {
    const TASKS: usize = 10_000;
    const CONCURRENCY: usize = 32;
    let _serial = SERIAL.lock().await;
    let Some(url) = server().await else { return };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let name = format!("qtasks-dist-{}", Uuid::new_v4());
    let backend = RedisBackend::connect(&url).await.map(|b| b.for_app(&name)).unwrap();
    let app = QueueTasks::builder(name.as_str()).backend(backend).build().unwrap();
    let mut conn = support::reconnecting_redis().await;

    // 20 ms per task: 64 slots run at most ~3 200 tasks/s, about what the
    // client enqueues, so the workers stay busy and worker A dies holding
    // tasks that have started (a run is counted first).
    // Worker A runs its tasks inline (`run_inline`), worker B spawns them:
    // a SIGKILL loses nothing either way.
    let worker = |label: &str, env: &[(&str, &str)]| {
        let shape = (CONCURRENCY, Duration::from_secs(2), Duration::from_millis(20));
        Proc::worker_env(label, &name, &url, shape, env)
    };
    let mut doomed = worker("worker A (inline, SIGKILLed)", &[("QTASKS_TEST_INLINE", "1")]);
    let mut survivor = worker("worker B", &[]);
    let doomed_id = ready_id(&doomed.expect("READY", Duration::from_secs(30)).await);
    let survivor_id = ready_id(&survivor.expect("READY", Duration::from_secs(30)).await);
    let mut both = vec![doomed_id.clone(), survivor_id.clone()];
    both.sort();
    assert_eq!(listed(&app).await, both);

    // The client: a third process, which knows only the task's name.
    let count = TASKS.to_string();
    let mut client = Proc::spawn("client", &["client", "--app", &name, "--url", &url, "--count", &count]);
    let mut uuids: Vec<Option<Uuid>> = vec![None; TASKS];
    let mut done_line = None;
    // Once about a third of the tasks have run, worker A dies mid-flight.
    let [runs_key, ..] = run_keys(&name);
    let inflight_key = format!("qtasks:{name}:inflight");
    loop {
        while let Ok(line) = client.lines.try_recv() {
            absorb(line, &mut uuids, &mut done_line);
        }
        let ran: usize = query(&mut conn, &["HLEN", &runs_key]).await;
        if ran >= TASKS / 3 {
            break;
        }
        assert!(Instant::now() < deadline, "only {ran} tasks ran:\n{}\n{}", doomed.log(), survivor.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_before: usize = query(&mut conn, &["ZCARD", &inflight_key]).await;
    doomed.sigkill();
    let killed_at = Instant::now();
    let ran_at_kill: usize = query(&mut conn, &["HLEN", &runs_key]).await;
    eprintln!(
        "SIGKILL after {:.2} s: {ran_at_kill} tasks had run, {in_flight_before} leases held by both workers",
        started.elapsed().as_secs_f64()
    );

    // The client waits (notified) for every task, then exits.
    while done_line.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.lines.recv()).await {
            Ok(Some(line)) => absorb(line, &mut uuids, &mut done_line),
            Ok(None) => break,
            Err(_) => panic!("the client did not finish within 120 s:\n{}\n{}", client.log(), survivor.log()),
        }
    }
    let status = client.exit_within(Duration::from_secs(10)).await;
    let all_done = started.elapsed();
    eprintln!("client: {} after {:.2} s", done_line.as_deref().unwrap_or("no DONE line"), all_done.as_secs_f64());
    assert!(status.success(), "client: {status}, {done_line:?}:\n{}", client.log());
    assert_eq!(done_line.as_deref(), Some(format!("DONE {TASKS} 0 0").as_str()));

    // Checked here too, from the records: every task ended `success` with n².
    let uuids: Vec<Uuid> =
        uuids.into_iter().enumerate().map(|(n, u)| u.unwrap_or_else(|| panic!("no uuid for {n}"))).collect();
    let left = deadline.saturating_duration_since(Instant::now());
    let waits = uuids.iter().map(|uuid| {
        retry("waiting", async || match app.wait(*uuid, left).await {
            Ok(task) => Ok(Some(task)),
            Err(WaitError::Timeout) => Ok(None),
            Err(e) => Err(e),
        })
    });
    for (n, task) in futures::future::join_all(waits).await.into_iter().enumerate() {
        let task = task.unwrap_or_else(|| panic!("task {n} did not finish"));
        assert_eq!(task.status, TaskStatus::Success, "task {n}: {task:?}");
        assert_eq!(task.result_as::<i64>().unwrap().unwrap(), (n * n) as i64, "task {n}");
    }

    // Every task ran; only those worker A held when it died may have run twice.
    let (runs, by_worker) = runs(&mut conn, &name).await;
    let never: Vec<usize> = (0..TASKS).filter(|n| !runs.contains_key(&(*n as i64))).collect();
    assert!(never.is_empty(), "{} tasks never ran: {:?}…", never.len(), &never[..never.len().min(10)]);
    assert_eq!(runs.len(), TASKS, "runs of unknown tasks");
    let twice: Vec<(i64, i64)> = runs.iter().filter(|(_, r)| **r > 1).map(|(n, r)| (*n, *r)).collect();
    let extra: i64 = runs.values().map(|r| r - 1).sum();
    let worker_runs = |pid: u32| by_worker.get(&pid).copied().unwrap_or(0);
    let (doomed_runs, survivor_runs) = (worker_runs(doomed.pid()), worker_runs(survivor.pid()));
    eprintln!(
        "{TASKS} tasks, all success in {:.2} s; ran more than once: {} tasks ({extra} extra runs); \
         worker A ran {doomed_runs} before SIGKILL, worker B {survivor_runs}",
        all_done.as_secs_f64(),
        twice.len(),
    );
    assert!(doomed_runs > 0 && survivor_runs > 0);
    assert_eq!(doomed_runs + survivor_runs, TASKS as i64 + extra);
    // A worker holds at most `concurrency` tasks: it fetches only as many
    // as it has free slots (one batch fits in them). Allow one more
    // batch's worth for a task of worker B outliving its 2 s lease on a
    // loaded machine.
    assert!(twice.len() <= 2 * CONCURRENCY, "ran more than once: {twice:?}");
    // Worker A was busy when it died: its tasks were redelivered.
    assert!(!twice.is_empty(), "no task of worker A was redelivered");
    assert!(twice.iter().all(|(_, r)| *r == 2), "ran three times or more: {twice:?}");

    // The registry forgets worker A once its entry's 20 s TTL passes
    // (5 s heartbeats: 15 to 20 s after the kill); worker B stays listed.
    // (The TTL plus 30 s is hang protection, not a bound on the TTL.)
    loop {
        let ids = listed(&app).await;
        assert!(ids.contains(&survivor_id), "worker B not listed: {ids:?}");
        if ids == [survivor_id.clone()] {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20) + support::HANG,
            "worker A still listed {:?} after SIGKILL",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("worker A left the registry {:.1} s after SIGKILL", killed_at.elapsed().as_secs_f64());

    // SIGTERM: graceful shutdown, exit 0, unregistered.
    survivor.stop().await;
    assert_eq!(listed(&app).await, Vec::<String>::new());
    doomed.report();
    survivor.report();
    client.report();

    retry("flushing", async || app.flush_all().await).await;
    delete_runs(&mut conn, &name).await;
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

/// Whether a `CLIENT LIST` line is a pub/sub connection (flag `P`).
fn is_pubsub(line: &str) -> bool {
    line.split(' ').any(|f| f.strip_prefix("flags=").is_some_and(|flags| flags.contains('P')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn connections_dropped_while_tasks_flow() {
    const DURING: i64 = 1500;
    const AFTER: i64 = 500;
    const ROUNDS: usize = 4;
    let _serial = SERIAL.lock().await;
    if server().await.is_none() {
        return;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(50);
    // Both processes log in as the test's own user: its connections are
    // the ones killed, and only they.
    let user = support::TestUser::create().await;
    let url_user = user.url().to_owned();
    let name = format!("qtasks-dist-kill-{}", Uuid::new_v4());
    let backend = RedisBackend::connect(&url_user).await.map(|b| b.for_app(&name)).unwrap();
    let app = QueueTasks::builder(name.as_str()).backend(backend).build().unwrap();
    // Logged in as the default user: never a target.
    let mut conn = support::reconnecting_redis().await;

    let mut worker = Proc::worker("worker", &name, &url_user, 16, Duration::from_secs(2), Duration::from_millis(5));
    worker.expect("READY", Duration::from_secs(30)).await;

    // A stream of tasks, each awaited (notified) as soon as it is enqueued…
    let enqueue_errors = Arc::new(AtomicUsize::new(0));
    let wait_errors = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn({
        let (client, enqueue_errors, wait_errors) =
            (app.client(), Arc::clone(&enqueue_errors), Arc::clone(&wait_errors));
        async move {
            let mut waits = Vec::new();
            for n in 0..DURING {
                let uuid = Uuid::new_v4();
                support::enqueue(&client, "square", json!([n]), uuid, &enqueue_errors).await;
                waits.push((n, support::wait(&client, uuid, deadline, &wait_errors)));
                if n % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            waits
        }
    });
    // …while the connections of both processes are killed: the worker's
    // shared and blocking (`BLPOP`) ones and its run counter's, the test's
    // shared one and its subscription. First, until tasks run and both
    // kinds of connection are up.
    let [runs_key, ..] = run_keys(&name);
    loop {
        let ran: usize = query(&mut conn, &["HLEN", &runs_key]).await;
        let conns = user.connections().await;
        if ran > 0 && conns.iter().any(|c| is_pubsub(c)) && conns.iter().any(|c| !is_pubsub(c)) {
            break;
        }
        assert!(Instant::now() < deadline, "no tasks ran or not every connection came up:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut normal, mut pubsub) = (0, 0);
    let kills_from = started.elapsed();
    for _ in 0..ROUNDS {
        normal += user.kill("normal").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        pubsub += user.kill("pubsub").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kills_to = started.elapsed();
    let mut waits = stream.await.unwrap();
    eprintln!(
        "killed {normal} normal and {pubsub} pub/sub connections in {ROUNDS} rounds, from {:.2} s to {:.2} s; \
         the {DURING} tasks were enqueued by {:.2} s",
        kills_from.as_secs_f64(),
        kills_to.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(normal >= 1 && pubsub >= 1, "nothing to kill: {normal} normal, {pubsub} pub/sub");

    // Work resumes: tasks enqueued after the kills finish too, notified.
    let resumed = Instant::now();
    let mut after = Vec::new();
    let client = app.client();
    for n in DURING..DURING + AFTER {
        let uuid = Uuid::new_v4();
        support::enqueue(&client, "square", json!([n]), uuid, &enqueue_errors).await;
        after.push((n, support::wait(&client, uuid, deadline, &wait_errors)));
    }
    for (n, handle) in after {
        let (task, _) =
            handle.await.unwrap().unwrap_or_else(|| panic!("task {n}, enqueued after the kills, did not finish"));
        assert_eq!(task.status, TaskStatus::Success, "task {n}: {task:?}");
        assert_eq!(task.result_as::<i64>().unwrap().unwrap(), n * n, "task {n}");
    }
    eprintln!("the {AFTER} tasks enqueued after the kills were done in {:.2} s", resumed.elapsed().as_secs_f64());
    for (n, handle) in waits.drain(..) {
        let (task, _) = handle.await.unwrap().unwrap_or_else(|| panic!("task {n} did not finish:\n{}", worker.log()));
        assert_eq!(task.status, TaskStatus::Success, "task {n}: {task:?}");
        assert_eq!(task.result_as::<i64>().unwrap().unwrap(), n * n, "task {n}");
    }
    let all_done = started.elapsed();

    let (runs, _) = runs(&mut conn, &name).await;
    let never: Vec<i64> = (0..DURING + AFTER).filter(|n| !runs.contains_key(n)).collect();
    assert!(never.is_empty(), "never ran: {never:?}");
    let twice = runs.values().filter(|r| **r > 1).count();
    eprintln!(
        "{} tasks, all success after {:.2} s; {} enqueue and {} wait errors retried; \
         {twice} tasks ran more than once (a lease lost with a killed connection)",
        DURING + AFTER,
        all_done.as_secs_f64(),
        enqueue_errors.load(Ordering::Relaxed),
        wait_errors.load(Ordering::Relaxed),
    );

    worker.stop().await;
    worker.report();

    retry("flushing", async || app.flush_all().await).await;
    delete_runs(&mut conn, &name).await;
}
