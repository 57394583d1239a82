//! `rediss://` (TLS) URLs: a Redis server with TLS, started by the test with
//! a fresh test CA and server certificate, runs a task end to end; the
//! client verifies the server's certificate.
//!
//! Needs `redis-server` (built with TLS, as Debian's is) and `openssl`, not
//! the server of `QTASKS_REDIS_URL`. Without them the test is ignored (see
//! `tests/build.rs`), except under CI, where it fails.

mod support;

use qtasks::{QueueTasks, RedisBackend, TaskStatus, json, task};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `tool` cannot be run: it was there at build time (else the test
/// is ignored) but has gone since; under CI that fails the test.
fn tool_missing(tool: &str) -> bool {
    let missing = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err();
    if missing {
        assert!(std::env::var_os("CI").is_none(), "`{tool}` is not installed (CI is set, so this fails)");
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED redis_tls: `{tool}` is not installed (it was when the tests were built); \
             this test is counted as passed ***\n"
        );
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_tls_tools_missing, ignore = "redis-server or openssl is not installed; see the build warning")]
async fn a_task_runs_end_to_end_over_tls() {
    if tool_missing("redis-server") || tool_missing("openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("qtasks-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr, ext) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("server.csr"), dir.join("ext.cnf"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let ok = Command::new("openssl").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(ok.success(), "openssl {args:?} failed");
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    // A CA, and a server certificate for 127.0.0.1 signed by it.
    openssl(
        &[os("req"), os("-x509"), os("-newkey"), os("rsa:2048"), os("-nodes"), os("-days"), os("1")]
            .into_iter()
            .chain([
                os("-subj"),
                os("/CN=qtasks-test-ca"),
                os("-keyout"),
                ca_key.as_os_str(),
                os("-out"),
                ca.as_os_str(),
            ])
            .collect::<Vec<_>>(),
    );
    openssl(
        &[os("req"), os("-newkey"), os("rsa:2048"), os("-nodes"), os("-subj"), os("/CN=127.0.0.1")]
            .into_iter()
            .chain([os("-keyout"), key.as_os_str(), os("-out"), csr.as_os_str()])
            .collect::<Vec<_>>(),
    );
    openssl(
        &[os("x509"), os("-req"), os("-in"), csr.as_os_str(), os("-CA"), ca.as_os_str(), os("-CAkey")]
            .into_iter()
            .chain([ca_key.as_os_str(), os("-CAcreateserial"), os("-days"), os("1"), os("-out"), cert.as_os_str()])
            .chain([os("-extfile"), ext.as_os_str()])
            .collect::<Vec<_>>(),
    );

    let port = free_port();
    let server = Server(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The client verifies the server against the system roots, which
    // rustls-native-certs reads from `SSL_CERT_FILE` when it is set: our
    // test CA is the only root. (This binary has one test,
    // so setting the variable races with nothing.)
    // SAFETY: no other thread reads the environment at this point.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca) };
    let url = format!("rediss://127.0.0.1:{port}");
    let started = Instant::now();
    let backend = loop {
        match RedisBackend::connect(&url).await.map(|b| b.for_app("tls-test")) {
            Ok(backend) => break backend,
            Err(e) if started.elapsed() < support::HANG => {
                eprintln!("waiting for the TLS server: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("could not connect over TLS: {e}"),
        }
    };
    let app = QueueTasks::builder("tls-test").task::<Add>().backend(backend).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("add", (40, 2)).await.unwrap().record(Duration::from_secs(10)).await.unwrap();
    assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(42))));
    worker.shutdown().await;

    // A plain `redis://` client is refused by the TLS port.
    let plain =
        tokio::time::timeout(Duration::from_secs(10), RedisBackend::connect(&format!("redis://127.0.0.1:{port}")))
            .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain connection to the TLS port must fail");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
