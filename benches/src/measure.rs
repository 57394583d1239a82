//! What every end-to-end benchmark binary shares, qtasks's and its peers'
//! alike: reading arguments, waiting for a count to reach a number, and
//! the summaries printed on `RESULT` lines. Included by path
//! (`#[path = …] mod measure;`), so the peer binaries need no dependency
//! on qtasks for it.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// The error of a benchmark binary.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The environment variable `var`, else `default`.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Argument `i`, parsed; `what` names it in the error.
pub fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
    args.get(i).ok_or_else(|| format!("missing <{what}>"))?.parse().map_err(|_| format!("bad <{what}>").into())
}

/// Calls `count` every `every` until it reaches `n`; with `window`, returns
/// the time (from `start`) at which each multiple of `window` was passed.
/// An error if the count stands still for 60 s.
pub async fn until_count<F, Fut>(
    n: u64,
    window: Option<u64>,
    start: Instant,
    every: Duration,
    mut count: F,
) -> Res<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Res<u64>>,
{
    let mut marks = Vec::new();
    let mut last = (0, Instant::now());
    loop {
        let done = count().await?;
        if let Some(w) = window {
            while (marks.len() as u64 + 1) * w <= done {
                marks.push(start.elapsed());
            }
        }
        if done >= n {
            return Ok(marks);
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(format!("no completion for 60 s after {done} of {n}").into());
        }
        tokio::time::sleep(every).await;
    }
}

/// ` window=… first_window_per_s=… … windows=r1,r2,…` from the end times of the windows.
pub fn windows_summary(window: u64, marks: &[Duration]) -> String {
    let mut rates = Vec::new();
    let mut prev = Duration::ZERO;
    for at in marks {
        rates.push(window as f64 / (*at - prev).as_secs_f64());
        prev = *at;
    }
    let (min, max) = rates.iter().fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let first = rates.first().copied().unwrap_or(0.0);
    let last = rates.last().copied().unwrap_or(0.0);
    let list: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    format!(
        " window={window} first_window_per_s={first:.0} last_window_per_s={last:.0} min_window_per_s={min:.0} \
         max_window_per_s={max:.0} last_over_first={:.3} min_over_max={:.3} windows={}",
        last / first,
        min / max,
        list.join(",")
    )
}

/// The `p` quantile of sorted durations, in µs.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// ` p50_us=… p90_us=… p99_us=… max_us=… mean_us=…` of round-trip times.
pub fn latency_summary(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len().max(1) as f64;
    format!(
        " p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} mean_us={mean:.0}",
        percentile(times, 0.50),
        percentile(times, 0.90),
        percentile(times, 0.99),
        percentile(times, 1.0),
    )
}
