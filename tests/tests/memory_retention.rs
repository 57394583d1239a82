//! The in-memory backend does not grow forever: records of finished tasks
//! expire after the retention, and the memory they held is given back. The
//! heap is measured exactly, by a counting allocator (its own test binary,
//! so no other test allocates meanwhile).

use qtasks::{Backend, MemoryBackend, QueueTasks, task};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[task]
async fn noop(n: u64) -> u64 {
    n
}

/// Tasks pushed through the worker; `QTASKS_RETENTION_TASKS` overrides it.
fn tasks() -> u64 {
    std::env::var("QTASKS_RETENTION_TASKS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tasks_through_a_worker_leave_nothing_behind_after_the_retention() {
    let retention = Duration::from_secs(1);
    let app = QueueTasks::builder("retention")
        .task::<Noop>()
        .backend(MemoryBackend::new().retention(Some(retention)))
        .build()
        .unwrap();
    let worker = app.worker().max_tasks_process(64).start().await.unwrap();
    // Warm up every lazily grown structure (worker batches, runtime queues)
    // with a full window, let it expire, then take the baseline.
    let mut last = None;
    for i in 0..10_000 {
        last = Some(app.enqueue(Noop::call(i)).await.unwrap());
    }
    last.unwrap().result(Duration::from_secs(300)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while app.queue_stats().await.unwrap().tasks["noop"].success < 10_000 {
        assert!(tokio::time::Instant::now() < deadline, "the warm-up did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(retention * 2).await;
    app.queue_stats().await.unwrap(); // purges what expired
    let empty = LIVE.load(Ordering::Relaxed);

    let total = tasks();
    let window = 10_000;
    // Counted from 10 000: the warm-up's ids.
    let total_ids = 10_000 + total;
    let mut sent = 10_000;
    while sent < total_ids {
        let batch = window.min(total_ids - sent);
        let mut last = None;
        for i in 0..batch {
            last = Some(app.enqueue(Noop::call(sent + i)).await.unwrap());
        }
        // Keep at most one window queued, as a steady producer would.
        last.unwrap().result(Duration::from_secs(300)).await.unwrap();
        sent += batch;
    }
    // Every task is finished once the counters say so (the last of a
    // window may finish before others of it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while app.queue_stats().await.unwrap().tasks["noop"].success < total + 10_000 {
        assert!(tokio::time::Instant::now() < deadline, "the tasks did not all finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full = LIVE.load(Ordering::Relaxed);

    // Past the retention every record has expired.
    tokio::time::sleep(retention * 2).await;
    let stats = app.queue_stats().await.unwrap();
    assert_eq!((stats.queued, stats.in_flight), (0, 0));
    let after = LIVE.load(Ordering::Relaxed);
    worker.shutdown().await;
    eprintln!("heap: empty app {empty} B, after {total} tasks {full} B, once expired {after} B");
    let allowed = empty + empty / 10;
    assert!(after <= allowed, "{after} B live once expired, more than the empty app's {empty} B + 10 %");
    assert!(app.backend().get_all().await.unwrap().is_empty(), "every record expired");
}
