//! Nanoseconds per trigger for every dispatch scenario, side by side.
//!
//! `cargo bench -p qtasks-benches --bench dispatch`
//!
//! Each sample times one call of the scenario's loop for `iters` triggers
//! (`iter_custom`), so criterion's own per-iteration closure call is not in
//! the numbers: they are the same loops callgrind counts.

use criterion::{Criterion, criterion_group, criterion_main};
use qtasks_benches::{Bench, SCENARIOS};
use std::time::{Duration, Instant};

fn dispatch(c: &mut Criterion) {
    let bench = Bench::default();
    let mut group = c.benchmark_group("dispatch");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for &name in SCENARIOS {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                assert!(bench.run(name, iters));
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
