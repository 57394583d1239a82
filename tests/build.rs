//! Decides, at each build, which tests can run here, so that a test with
//! nothing to test against is reported `ignored` by the test harness
//! instead of passing without having tested anything.
//!
//! - `cfg(redis_unreachable)`: nothing answers a TCP connect at the address
//!   of `QTASKS_REDIS_URL` (default redis://127.0.0.1:6379). The tests that
//!   need that server carry
//!   `#[cfg_attr(redis_unreachable, ignore = "…")]`.
//! - `cfg(redis_cluster_unreachable)`: nothing answers a TCP connect at
//!   the first node of `QTASKS_REDIS_CLUSTER_URL` (default
//!   redis+cluster://127.0.0.1:7001,…; `scripts/redis-cluster` starts
//!   one). The cluster tests (`redis_cluster.rs`) carry
//!   `#[cfg_attr(redis_cluster_unreachable, ignore = "…")]`.
//! - `cfg(redis_tls_tools_missing)`: `redis-server` or `openssl` cannot be
//!   run; `redis_tls.rs` starts its own TLS server with them.
//! - `cfg(postgres_unreachable)`: nothing answers a TCP connect at the
//!   address of `QTASKS_POSTGRES_URL` (default
//!   postgres://postgres@127.0.0.1:5432/qtasks_test). The tests that need
//!   that server carry `#[cfg_attr(postgres_unreachable, ignore = "…")]`.
//!
//! - `cfg(python_env_missing)`: the virtualenv with the real Python QTasks
//!   and Celery packages (`scripts/python-env`, which `scripts/test` runs)
//!   is not there, nor is `QTASKS_PYTHON` set. The tests that drive those
//!   clients (`python_qtasks.rs`, `python_celery.rs`) carry
//!   `#[cfg_attr(python_env_missing, ignore = "…")]`.
//! - `cfg(chromium_missing)`: `chromium` or `chromedriver` cannot be run;
//!   the dashboard's browser tests (`web_browser.rs`) drive them.
//!
//! Under CI (`CI` set) none is ever set: the tests run and fail, as a
//! missing server there is a broken CI. Each skip prints a
//! `cargo:warning` naming what is skipped and why.
//!
//! The script runs again at every build (its `rerun-if-changed` names a
//! file that never exists), so the answer is never older than the build.
//! The price: every build of this package recompiles its test binaries.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_CLUSTER_URL: &str = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/qtasks_test";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

fn main() {
    println!("cargo::rustc-check-cfg=cfg(redis_unreachable)");
    println!("cargo::rustc-check-cfg=cfg(redis_cluster_unreachable)");
    println!("cargo::rustc-check-cfg=cfg(redis_tls_tools_missing)");
    println!("cargo::rustc-check-cfg=cfg(postgres_unreachable)");
    println!("cargo::rustc-check-cfg=cfg(python_env_missing)");
    println!("cargo::rerun-if-env-changed=QTASKS_PYTHON");
    println!("cargo::rustc-check-cfg=cfg(chromium_missing)");
    println!("cargo::rerun-if-env-changed=QTASKS_REDIS_URL");
    println!("cargo::rerun-if-env-changed=QTASKS_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=QTASKS_REDIS_CLUSTER_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    // Never created: Cargo then runs this script at every build.
    println!("cargo::rerun-if-changed=build.rs.probe-at-every-build");

    let ci = std::env::var_os("CI").is_some();
    let url = std::env::var("QTASKS_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    if let Err(why) = probe(&url) {
        skip(
            ci,
            "redis_unreachable",
            &format!("Redis is not reachable at {url} ({why})"),
            "the tests that need it (the `redis::*` tests of on_both_backends! files, cancel_redis, distributed, \
             redis_backend, deps_state::redis_smoke, schedule::redis_*, canvas::*_on_redis, \
             config::connect_with_gives_the_redis_settings_to_the_backend)",
            "Start redis-server or set QTASKS_REDIS_URL",
        );
    }
    let url = std::env::var("QTASKS_REDIS_CLUSTER_URL").unwrap_or_else(|_| DEFAULT_CLUSTER_URL.to_owned());
    if let Err(why) = probe_cluster(&url) {
        skip(
            ci,
            "redis_cluster_unreachable",
            &format!("the Redis Cluster is not reachable at {} ({why})", redact(&url)),
            "the cluster tests (redis_cluster::*, queues::cluster_*)",
            "Run scripts/redis-cluster or set QTASKS_REDIS_CLUSTER_URL",
        );
    }
    let url = std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    if let Err(why) = probe_postgres(&url) {
        skip(
            ci,
            "postgres_unreachable",
            &format!("Postgres is not reachable at {} ({why})", redact(&url)),
            "the tests that need it (conformance::postgres_*, postgres::*)",
            "Start PostgreSQL or set QTASKS_POSTGRES_URL",
        );
    }
    if std::env::var_os("QTASKS_PYTHON").is_none() {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let venv = std::path::Path::new(&manifest).join("../target/python-env");
        let pinned = std::fs::read_dir(&venv)
            .map(|dir| dir.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".pins-")))
            .unwrap_or(false);
        if !pinned {
            skip(
                ci,
                "python_env_missing",
                &format!("the Python virtualenv is missing ({})", venv.display()),
                "python_qtasks and python_celery",
                "Run scripts/python-env (scripts/test does) or set QTASKS_PYTHON",
            );
        }
    }
    let missing = not_installed(&["redis-server", "openssl"]);
    if !missing.is_empty() {
        skip(
            ci,
            "redis_tls_tools_missing",
            &format!("{missing} not installed"),
            "redis_tls::a_task_runs_end_to_end_over_tls",
            "Install them",
        );
    }
    let missing = not_installed(&["chromium", "chromedriver"]);
    if !missing.is_empty() {
        skip(
            ci,
            "chromium_missing",
            &format!("{missing} not installed"),
            "the dashboard's browser tests (web_browser::*)",
            "apt-get install chromium chromium-driver",
        );
    }
}

/// Reports what a group of tests lacks (`why`): under CI a warning only,
/// so they run and fail; elsewhere `cfg` is set, which makes them ignored,
/// and a warning names them (`tests`) and how to get what they lack (`fix`).
fn skip(ci: bool, cfg: &str, why: &str, tests: &str, fix: &str) {
    if ci {
        println!("cargo::warning={why}; CI is set, so {tests} run and fail");
    } else {
        println!("cargo::rustc-cfg={cfg}");
        println!("cargo::warning={why}: {tests} are IGNORED. {fix}; with CI set they fail instead");
    }
}

/// The tools of `tools` that cannot be run, joined with "and" (empty if none).
fn not_installed(tools: &[&str]) -> String {
    tools.iter().copied().filter(|tool| !runs(tool)).collect::<Vec<_>>().join(" and ")
}

/// Whether `tool --version` can be run.
fn runs(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The URL without its password.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Connects to the server of a `postgres://` or `postgresql://` URL (TCP
/// only; a URL with a socket `host=/path` parameter is taken as reachable),
/// and hangs up.
fn probe_postgres(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme in the URL")?;
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(format!("unknown scheme `{scheme}`"));
    }
    if url.contains("host=/") {
        return Ok(());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.strip_prefix('[') {
        // [v6]:port
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port: u16 = match port {
        Some(port) => port.parse().map_err(|_| format!("bad port `{port}`"))?,
        None => 5432,
    };
    connect_any(host, port)
}

fn connect_any(host: &str, port: u16) -> Result<(), String> {
    let addrs = (host, port).to_socket_addrs().map_err(|e| format!("resolving {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Connects to the first node of a `redis+cluster://` (`rediss+cluster://`)
/// URL, and hangs up.
fn probe_cluster(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme in the URL")?;
    let plain = scheme.strip_suffix("+cluster").ok_or_else(|| format!("`{scheme}` is not a cluster scheme"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (user, hosts) = authority.rsplit_once('@').map_or(("", authority), |(user, hosts)| (user, hosts));
    let first = hosts.split(',').next().unwrap_or_default();
    let at = if user.is_empty() { String::new() } else { format!("{user}@") };
    probe(&format!("{plain}://{at}{first}"))
}

/// Connects to the server of a `redis://`, `rediss://` or `redis+unix://`
/// (`unix://`) URL, or to the first node of a cluster URL, and hangs up.
fn probe(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme in the URL")?;
    match scheme {
        "redis" | "rediss" | "valkey" | "valkeys" => {}
        "redis+unix" | "unix" | "valkey+unix" => return probe_unix(rest),
        "redis+cluster" | "rediss+cluster" => return probe_cluster(url),
        other => return Err(format!("unknown scheme `{other}`")),
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.strip_prefix('[') {
        // [v6]:port
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port: u16 = match port {
        Some(port) => port.parse().map_err(|_| format!("bad port `{port}`"))?,
        None => 6379,
    };
    let addrs = (host, port).to_socket_addrs().map_err(|e| format!("resolving {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

#[cfg(unix)]
fn probe_unix(rest: &str) -> Result<(), String> {
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    std::os::unix::net::UnixStream::connect(path).map(drop).map_err(|e| format!("connecting to {path}: {e}"))
}

#[cfg(not(unix))]
fn probe_unix(_rest: &str) -> Result<(), String> {
    Err("unix sockets are not supported here".to_owned())
}
