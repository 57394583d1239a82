//! Worker and client processes (the `qtasks-test-worker` binary of this
//! package) for the tests that run several processes, and the keys where
//! its workers count and log each run of `square` (see the binary's doc).

use super::{HANG, query};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_qtasks-test-worker");

/// A `qtasks-test-worker` process: its stdout as lines, its stderr kept.
/// Killed if still running when dropped (a failed test leaves no process).
pub struct Proc {
    pub name: String,
    child: Child,
    pub lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str]) -> Self {
        Self::spawn_bin(BIN, name, args)
    }

    /// As [`spawn`](Self::spawn), for another binary of this package.
    pub fn spawn_bin(bin: &str, name: &str, args: &[&str]) -> Self {
        Self::spawn_env(bin, name, args, &[])
    }

    /// As [`spawn_bin`](Self::spawn_bin), with more environment variables.
    pub fn spawn_env(bin: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (log, pipe) = (Arc::clone(&stderr), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        Self { name: name.to_owned(), child, lines, stderr }
    }

    /// A worker of `app` (`square`, see the binary): up to `concurrency`
    /// tasks at once under a `lease`, each run lasting `task` once counted.
    pub fn worker(name: &str, app: &str, url: &str, concurrency: usize, lease: Duration, task: Duration) -> Self {
        Self::worker_env(name, app, url, (concurrency, lease, task), &[])
    }

    /// As [`worker`](Self::worker), with more environment variables
    /// (`QTASKS_TEST_INLINE=1`: a worker that runs its tasks inline).
    pub fn worker_env(
        name: &str,
        app: &str,
        url: &str,
        (concurrency, lease, task): (usize, Duration, Duration),
        env: &[(&str, &str)],
    ) -> Self {
        let (concurrency, lease, task) =
            (concurrency.to_string(), lease.as_millis().to_string(), task.as_millis().to_string());
        let args = [
            "worker",
            "--app",
            app,
            "--url",
            url,
            "--concurrency",
            &concurrency,
            "--lease-ms",
            &lease,
            "--task-ms",
            &task,
        ];
        Self::spawn_env(BIN, name, &args, env)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line starting with `prefix` (others are skipped).
    pub async fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{} ended its output before `{prefix}`:\n{}", self.name, self.log()),
                Err(_) => panic!("no `{prefix}` from {} within {within:?}:\n{}", self.name, self.log()),
            }
        }
    }

    /// Whether a stdout line starting with `prefix` has come, without
    /// waiting (the lines read before it are skipped).
    pub fn said(&mut self, prefix: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            if line.starts_with(prefix) {
                return true;
            }
        }
        false
    }

    pub fn sigkill(&mut self) {
        // `Child::kill` sends SIGKILL.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -TERM {}: {status}", self.pid());
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(started.elapsed() < within, "{} still running after {within:?}:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then `STOPPED` and exit 0, each within [`HANG`].
    pub async fn stop(&mut self) {
        self.sigterm();
        self.expect("STOPPED", HANG).await;
        let status = self.exit_within(HANG).await;
        assert!(status.success(), "{} after SIGTERM: {status}:\n{}", self.name, self.log());
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Whether a stderr line so far holds every one of `words`.
    pub fn logged(&self, words: &[&str]) -> bool {
        self.stderr.lock().unwrap().iter().any(|line| words.iter().all(|w| line.contains(w)))
    }

    /// Prints how much it logged, and the first lines.
    pub fn report(&self) {
        let log = self.stderr.lock().unwrap();
        eprintln!("{} (pid {}): {} stderr lines", self.name, self.pid(), log.len());
        for line in log.iter().take(40) {
            eprintln!("  | {line}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The keys where the worker processes of `app` count the runs of
/// `square`: per `n`, per worker pid, and the run log.
pub fn run_keys(app: &str) -> [String; 3] {
    ["runs", "runs-by-worker", "run-log"].map(|key| format!("qtasks-test:{app}:{key}"))
}

/// Runs of `square(n)` per `n`, and runs per worker pid.
pub async fn runs(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    app: &str,
) -> (HashMap<i64, i64>, HashMap<u32, i64>) {
    let [runs, by_worker, _] = run_keys(app);
    (query(conn, &["HGETALL", &runs]).await, query(conn, &["HGETALL", &by_worker]).await)
}

/// One run of `square(n)` as logged: by which process, when (µs, the
/// server's clock, as the run was counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub n: i64,
    pub pid: u32,
    pub at_us: i64,
}

/// Every run logged, oldest first.
pub async fn run_log(conn: &mut (impl redis::aio::ConnectionLike + Send), app: &str) -> Vec<Run> {
    let [_, _, log] = run_keys(app);
    let logged: HashMap<String, i64> = query(conn, &["HGETALL", &log]).await;
    let mut runs: Vec<Run> = logged
        .into_iter()
        .map(|(field, at_us)| {
            let mut words = field.split(' ').map(|w| w.parse::<i64>().unwrap_or_else(|e| panic!("{field:?}: {e}")));
            let (n, pid) = (words.next().unwrap(), words.next().unwrap());
            Run { n, pid: u32::try_from(pid).unwrap(), at_us }
        })
        .collect();
    runs.sort_by_key(|run| run.at_us);
    runs
}

/// Deletes the run counts and log of `app`.
pub async fn delete_runs(conn: &mut (impl redis::aio::ConnectionLike + Send), app: &str) {
    let keys = run_keys(app);
    let _: i64 = query(conn, &["DEL", &keys[0], &keys[1], &keys[2]]).await;
}
