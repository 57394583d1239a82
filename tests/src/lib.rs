//! Integration tests live in `tests/tests/`.
//!
//! The library holds what the test binaries in `src/bin/` share.

/// Logs to stderr, without colours, at `RUST_LOG`'s levels (`warn` by
/// default): what a test that fails shows of a worker process.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

/// Waits for a worker process's stop request: SIGTERM, Ctrl-C, or the end
/// of its stdin (the test that started it dropped the pipe), and says which
/// on stderr.
pub async fn stop_signal() {
    let (tx, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => eprintln!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => eprintln!("Ctrl-C: shutting down"),
        _ = stdin_closed => eprintln!("stdin closed: shutting down"),
    }
}
