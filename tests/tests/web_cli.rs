//! The CLI's `dashboard` command (feature `web`), run as a real process:
//! the `qtasks-test-cli` app binary on the memory backend with a worker in
//! the same process, on a port the system picks (`--bind 127.0.0.1:0`; the
//! command prints the address it bound). Its JSON API answers, runs a task
//! enqueued through it, and `QTASKS_DASHBOARD_TOKEN` guards it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The dashboard process, killed when dropped.
struct Dashboard {
    child: Child,
    addr: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(token: Option<&str>, extra: &[&str]) -> Dashboard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qtasks-test-cli"));
    for variable in qtasks::Config::variables() {
        command.env_remove(variable);
    }
    command.env_remove("QTASKS_DASHBOARD_TOKEN");
    if let Some(token) = token {
        command.env("QTASKS_DASHBOARD_TOKEN", token);
    }
    let mut child = command
        .env("QTASKS_TEST_APP", format!("web-cli-{}", std::process::id()))
        .args(["--broker-url", "memory://", "dashboard", "--bind", "127.0.0.1:0", "--worker"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr =
        line.split("http://").nth(1).unwrap_or_else(|| panic!("no address in {line:?}")).trim().trim_end_matches('/');
    Dashboard { addr: addr.to_owned(), child }
}

/// One HTTP/1.1 request; the status code and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_dashboard_command_serves_the_api_and_runs_tasks_with_its_worker() {
    let d = start(None, &[]);
    let (status, body) = request(&d.addr, "GET", "/api/overview", &[], "");
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["backend"], "memory");
    assert!(!body.contains("memory://"), "no broker URL in a response");
    let (status, body) = request(
        &d.addr,
        "POST",
        "/api/tasks",
        &["Content-Type: application/json"],
        r#"{"task": "add", "args": [2, 3]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let uuid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["uuid"].as_str().unwrap().to_owned();
    // Hang protection only: the worker in the process runs it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = request(&d.addr, "GET", &format!("/api/tasks/{uuid}"), &[], "");
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
        if detail["task"]["status"] == "success" {
            assert_eq!(detail["task"]["result"], 5);
            break;
        }
        assert!(Instant::now() < deadline, "never ran: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = request(&d.addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
}

#[test]
fn the_dashboard_command_takes_its_token_from_the_environment_and_can_be_read_only() {
    let d = start(Some("s3cret"), &["--read-only"]);
    assert_eq!(request(&d.addr, "GET", "/api/overview", &[], "").0, 401);
    let (status, body) = request(&d.addr, "GET", "/api/overview", &["Authorization: Bearer s3cret"], "");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("s3cret"));
    let (status, _) = request(
        &d.addr,
        "POST",
        "/api/queues/default/pause",
        &["Authorization: Bearer s3cret", "Content-Type: application/json"],
        "{}",
    );
    assert_eq!(status, 403);
}
