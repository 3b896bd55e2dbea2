//! The process's heap: one glibc arena, and free pages given back after a burst of work.
//!
//! glibc gives each thread that allocates under contention an arena of its own (up to eight
//! per core) and keeps the freed memory of every arena. After a burst of requests served on
//! many blocking-pool threads, berthd's RSS stayed at its high-water mark (17 → 56 MB after
//! 200 clients for 60 s). Capping the arenas and trimming once the daemon is idle brings it
//! back down; both only return free memory, so nothing in use changes. The cap is one arena:
//! `malloc_trim` gives back the free pages inside every arena but the free top of the main
//! arena's heap only, so with four arenas each kept a few MiB after a load (11.4 MB of
//! anonymous memory after an explicit trim, against 10.0 MB with one). The arena's lock is
//! rarely contended: glibc's per-thread cache serves most small allocations without it, and
//! the load test served the same requests per second with one arena as with four.
//!
//! What the trim cannot give back is fragmentation: heaptrack counts 2 MB of heap live after
//! the load test (the containers' own state, remade by their restarts), spread over pages of a
//! heap that held 10 MB at its peak.
//!
//! Within a burst the opposite holds: a build context or an image archive streams tens of
//! megabytes through buffers of a few hundred KiB (hyper's read buffer, the body's parts), and
//! glibc's defaults gave each one fresh pages. Its heap top was trimmed past 2 × the dynamic
//! mmap threshold (a few hundred KiB) and bigger buffers were mmapped, so the kernel copied
//! every byte of a request body into a newly faulted page: a quarter of berthd's CPU in a
//! cached build (perf), 41 → 30 ms of CPU and 68 → 58 ms of wall time per build with the
//! thresholds below. Freed memory now stays in the heap for the next buffer until the idle
//! trim gives it back, so the RSS after a burst is unchanged.
//!
//! The trim cannot give back a page that holds a chunk sitting in a thread's cache (glibc's
//! tcache: up to seven freed chunks of each size up to 1032 bytes, per thread, emptied only
//! when the thread ends). After a load, the long-lived tokio workers' caches held chunks spread
//! over some 4 MB of pages. So once the daemon is idle, each worker empties its own cache the
//! next time it parks (`worker_parked`): it takes the cached chunks back out with allocations of
//! each cached size (a thread's allocations are served from its cache first) and frees them on a
//! short-lived thread, whose end returns them to the arena, before the trim. Until 2026-12-07 the
//! daemon started itself again with `glibc.malloc.tcache_max=128` in `GLIBC_TUNABLES` instead
//! (glibc reads tunables from the environment only, at a program's start): about 0.5 MB less
//! anonymous memory at idle, for a second `execve` of the binary, 1.8 ms, at every start
//! (docs/hardening.md, *The threads' caches without a second start*).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most arenas glibc may create (its default is 8 × cores): one, see above.
const ARENA_MAX: libc::c_int = 1;

/// Allocations from this size up are mmapped (glibc's default starts at 128 KiB and adapts).
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Free memory at the heap's top is given back past this size (glibc's default: 128 KiB,
/// adapting to twice the mmap threshold).
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// The stack size of the daemon's runtime threads (Rust's default: 2 MiB). glibc keeps the
/// stacks of ended threads for new ones, up to 40 MiB of them, each with the pages it had
/// touched near its top still resident: after a burst of blocking-pool threads, twenty 2 MiB
/// stacks held some 0.6 MB. Only the address space is bigger: a stack's pages are mapped as the
/// thread touches them.
pub const THREAD_STACK: usize = 8 << 20;

/// How long an idle thread of tokio's blocking pool waits for work before it ends (tokio's
/// default: 10 s). Its cache goes back to the arena when it ends, so it ends before the first
/// idle trim (`trim_when_idle`, at least 5 s after the last request).
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(3);

/// Requests seen so far (bumped by the server for each request).
static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// Cap glibc's arenas and keep freed buffers for reuse within a burst (the daemon's, not the
/// supervisor's or the helpers'). Call it first thing in `main`, before threads exist.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes tuning parameters of the allocator; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Give free heap pages (in every arena) back to the kernel.
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Note that a request came in (or that memory was freed outside one).
pub fn note_activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Trim the heap once the daemon has been idle for `quiet` after some activity, and again once
/// the blocking pool's threads of the burst have ended. Runs forever.
pub async fn trim_when_idle(quiet: Duration) {
    let mut idle = Idle::new(ACTIVITY.load(Ordering::Relaxed));
    loop {
        tokio::time::sleep(quiet).await;
        if idle.tick(ACTIVITY.load(Ordering::Relaxed)) {
            // Each worker empties its cache the next time it parks: this one right after this
            // task yields, a parked one once the task below wakes it.
            CACHE_EPOCH.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async {});
            // Inline: a trim of berthd's small heap takes well under a millisecond, and a
            // blocking-pool thread started for it would itself stay for 10 s.
            trim_heap();
        }
    }
}

/// When to trim: at the first quiet tick after a tick that saw activity, and at the third, for
/// what ended after the first (a blocking-pool thread whose task ran past it returns its cache
/// to the arena when it ends, `BLOCKING_KEEP_ALIVE` later).
struct Idle {
    seen: u64,
    /// Quiet ticks since the last one that saw activity, if any activity was seen since the
    /// last trims.
    quiet: Option<u32>,
}

/// The quiet ticks after activity at which the heap is trimmed.
const TRIM_AT: [u32; 2] = [1, 3];

impl Idle {
    fn new(seen: u64) -> Idle {
        Idle { seen, quiet: None }
    }

    /// One tick, with the activity counter as it is now: whether to trim.
    fn tick(&mut self, now: u64) -> bool {
        if now != self.seen {
            self.seen = now;
            self.quiet = Some(0);
            return false;
        }
        let Some(q) = self.quiet.as_mut() else {
            return false;
        };
        *q += 1;
        let trim = TRIM_AT.contains(q);
        if *q >= TRIM_AT[TRIM_AT.len() - 1] {
            self.quiet = None;
        }
        trim
    }
}

/// Bumped by the idle trim: each runtime worker empties its cache the next time it parks.
static CACHE_EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The `CACHE_EPOCH` this thread last emptied its cache for.
    static EMPTIED_FOR: Cell<u64> = const { Cell::new(0) };
}

/// glibc's per-thread cache: 64 size classes 16 bytes apart, the smallest for requests of up to
/// 24 bytes, up to 7 chunks each (`TCACHE_MAX_BINS`, `TCACHE_FILL_COUNT` in its malloc.c; they
/// change only through tunables, which berthd leaves alone).
const TCACHE_BINS: usize = 64;
const TCACHE_FILL: usize = 7;

/// The daemon's runtime workers call this before they park (tokio's `on_thread_park`): once
/// the daemon has gone idle, the first park empties the worker's cache and trims the heap.
pub fn worker_parked() {
    let want = CACHE_EPOCH.load(Ordering::Relaxed);
    if EMPTIED_FOR.with(|e| e.replace(want)) != want {
        empty_thread_cache();
        trim_heap();
    }
}

/// Chunks taken out of a thread's cache, freed where this is dropped.
struct Taken(Vec<usize>);

impl Drop for Taken {
    fn drop(&mut self) {
        for p in self.0.drain(..) {
            // SAFETY: each pointer came from `libc::malloc` in `empty_thread_cache` and is
            // freed once, here.
            unsafe { libc::free(p as *mut libc::c_void) };
        }
    }
}

/// Move the chunks in this thread's cache back to the arena, where the trim can give their
/// pages back: allocations of each cached size take them out (a thread allocates from its
/// cache first), and a short-lived thread frees them; its cache takes them, and its end returns
/// them to the arena. Freed here they would go straight back into this thread's cache.
fn empty_thread_cache() {
    let mut taken = Taken(Vec::with_capacity(TCACHE_BINS * TCACHE_FILL));
    for bin in 0..TCACHE_BINS {
        for _ in 0..TCACHE_FILL {
            // SAFETY: a plain allocation, freed when `taken` is dropped.
            let p = unsafe { libc::malloc(24 + 16 * bin) };
            if !p.is_null() {
                taken.0.push(p as usize);
            }
        }
    }
    // If the thread cannot be made, the closure (and `taken` with it) is dropped here: the
    // chunks go back to this thread's cache, as they were.
    let freer = std::thread::Builder::new()
        .name("berthd-trim".to_string())
        .stack_size(64 << 10)
        .spawn(move || drop(taken));
    if let Ok(t) = freer {
        let _ = t.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_burst_then_once_its_threads_have_ended() {
        let mut idle = Idle::new(0);
        // Quiet from the start: nothing to give back.
        assert!(!idle.tick(0));
        assert!(!idle.tick(0));
        // A burst over two ticks, then quiet: trims at the first and third quiet ticks only.
        assert!(!idle.tick(5));
        assert!(!idle.tick(9));
        let quiet: Vec<bool> = (0..6).map(|_| idle.tick(9)).collect();
        assert_eq!(quiet, [true, false, true, false, false, false]);
        // Activity between the two trims starts the count again.
        assert!(!idle.tick(10));
        assert!(idle.tick(10));
        assert!(!idle.tick(11));
        let quiet: Vec<bool> = (0..4).map(|_| idle.tick(11)).collect();
        assert_eq!(quiet, [true, false, true, false]);
    }

    #[test]
    fn a_threads_cache_is_emptied_once_per_idle_period() {
        // A worker that never saw an idle period does nothing.
        std::thread::spawn(|| {
            worker_parked();
            assert_eq!(EMPTIED_FOR.with(Cell::get), 0);
        })
        .join()
        .unwrap();
        CACHE_EPOCH.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(|| {
            // Chunks of every cached size freed on this thread, then taken back out: what the
            // allocator holds stays consistent (a double free would abort the test).
            let v: Vec<Vec<u8>> = (0..200).map(|i| Vec::with_capacity(8 + 5 * i)).collect();
            drop(v);
            let want = CACHE_EPOCH.load(Ordering::Relaxed);
            worker_parked();
            assert_eq!(EMPTIED_FOR.with(Cell::get), want);
            // Parked again in the same period: nothing more to do.
            worker_parked();
            let again: Vec<Vec<u8>> = (0..200).map(|i| vec![1u8; 8 + 5 * i]).collect();
            assert!(again.iter().enumerate().all(|(i, v)| v.len() == 8 + 5 * i));
        })
        .join()
        .unwrap();
    }
}
