//! The metrics recorder keeps each request's duration until its upkeep
//! folds it into the histogram's buckets: without the upkeep thread that
//! `metrics_handle` starts, a keyward nobody scrapes grew by about 8 bytes a
//! request. Its own binary, because it counts the heap of the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Records `n` request durations the way the request middleware does.
fn record(n: usize) {
    let duration = metrics::histogram!("keyward_http_request_duration_seconds",
        "method" => "GET", "route" => "/healthz", "status" => "200");
    for i in 0..n {
        duration.record(0.0001 * (i % 100) as f64);
    }
}

#[test]
fn recorded_durations_do_not_pile_up_unscraped() {
    keyward::http::metrics_handle();
    let after_upkeep =
        || std::thread::sleep(keyward::http::METRICS_UPKEEP_PERIOD + std::time::Duration::from_millis(200));
    // The series and its buckets exist before counting starts.
    record(1_000);
    after_upkeep();
    let before = IN_USE.load(Ordering::Relaxed);
    const SAMPLES: usize = 200_000;
    record(SAMPLES);
    // Drained blocks are freed once every thread has moved on (epoch-based
    // reclamation), which a server's next requests see to.
    for _ in 0..3 {
        after_upkeep();
        record(1_000);
    }
    let grown = IN_USE.load(Ordering::Relaxed) - before;
    // Kept, the samples would hold about 1.7 MB.
    assert!(grown < 64 * 1024, "{grown} bytes still held for {SAMPLES} recorded durations");
    // And a scrape still sees every one of them.
    let rendered = keyward::http::metrics_handle().render();
    let count = rendered
        .lines()
        .find(|l| l.starts_with("keyward_http_request_duration_seconds_count{") && l.contains("/healthz"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok());
    assert_eq!(count, Some(SAMPLES + 4_000), "{rendered}");
}
