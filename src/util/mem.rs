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
//! over some 4 MB of pages. Caching only chunks up to 128 bytes gives those pages back (the
//! load test: 3.2 → 11.0 MB of anonymous memory before, 2.7 → 6.9 MB after) and served
//! `/_ping` and the container list as fast. glibc reads that limit from the environment only,
//! when a program starts, so the daemon starts itself again with it (`apply_tunables`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most arenas glibc may create (its default is 8 × cores): one, see above.
const ARENA_MAX: libc::c_int = 1;

/// Allocations from this size up are mmapped (glibc's default starts at 128 KiB and adapts).
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Free memory at the heap's top is given back past this size (glibc's default: 128 KiB,
/// adapting to twice the mmap threshold).
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// The glibc tunables berthd runs with: its threads cache freed chunks of up to 128 bytes only,
/// and the stacks of ended threads are unmapped rather than kept for the next thread.
///
/// glibc keeps up to 40 MiB of ended threads' stacks for reuse, each with the pages it had
/// touched near its top still resident. tokio's blocking pool starts threads for a burst and
/// ends them after ten idle seconds, so after the load test some twenty stacks of dead threads
/// held 0.6 MB. A new blocking thread now maps a fresh stack, a few microseconds once per
/// thread.
const TUNABLES: &[&str] = &[
    "glibc.malloc.tcache_max=128",
    "glibc.pthread.stack_cache_size=0",
];

/// Set for the second start: the `GLIBC_TUNABLES` berthd was started with (empty when none: an
/// empty one sets nothing either), given back to the environment its children inherit.
const STARTED_WITH: &str = "BERTH_GLIBC_TUNABLES";

/// What to do about glibc's tunables at the daemon's start, from its environment.
#[derive(Debug, PartialEq)]
enum Tunables {
    /// Start again with this `GLIBC_TUNABLES`, remembering the one it had (if any).
    Restart {
        tunables: String,
        had: Option<String>,
    },
    /// This is the second start: give the environment back what it had.
    Restore(Option<String>),
    /// The user set a tcache tunable of their own: leave everything as it is.
    Keep,
}

fn plan_tunables(current: Option<&str>, started_with: Option<&str>) -> Tunables {
    if let Some(had) = started_with {
        return Tunables::Restore((!had.is_empty()).then(|| had.to_string()));
    }
    let current = current.filter(|t| !t.is_empty());
    if current.is_some_and(|t| t.contains("glibc.malloc.tcache")) {
        return Tunables::Keep;
    }
    // A tunable the user set keeps the user's value.
    let ours = TUNABLES.iter().filter(|t| {
        let name = t.split('=').next().unwrap_or(t);
        current.is_none_or(|c| !c.split(':').any(|u| u.split('=').next() == Some(name)))
    });
    let tunables = current
        .into_iter()
        .chain(ours.copied())
        .collect::<Vec<_>>()
        .join(":");
    Tunables::Restart {
        tunables,
        had: current.map(str::to_string),
    }
}

/// Start the daemon again (the same process: `execve` of `/proc/self/exe` with the same
/// arguments) with berthd's glibc tunable, or, in the second start, put the environment back as
/// it was so that supervisors and helpers inherit the user's. Call it first thing in the
/// daemon's `main`, before threads exist and before systemd's variables are read (the pid and
/// the inherited sockets stay the same across `execve`). If the restart fails, berthd goes on
/// with glibc's defaults.
pub fn apply_tunables() {
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let started_with = std::env::var(STARTED_WITH).ok();
    match plan_tunables(current.as_deref(), started_with.as_deref()) {
        Tunables::Keep => {}
        Tunables::Restore(had) => {
            // Single-threaded here (see above), so changing the environment races nothing.
            std::env::remove_var(STARTED_WITH);
            match had {
                Some(t) => std::env::set_var("GLIBC_TUNABLES", t),
                None => std::env::remove_var("GLIBC_TUNABLES"),
            }
        }
        Tunables::Restart { tunables, had } => {
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let arg0 = args.next().unwrap_or_default();
            let err = std::process::Command::new("/proc/self/exe")
                .arg0(arg0)
                .args(args)
                .env("GLIBC_TUNABLES", tunables)
                .env(STARTED_WITH, had.as_deref().unwrap_or(""))
                .exec();
            eprintln!("berthd: start again with glibc's tunables {TUNABLES:?}: {err}");
        }
    }
}

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

/// Trim the heap once the daemon has been idle for `quiet` after some activity. Runs forever.
pub async fn trim_when_idle(quiet: Duration) {
    let mut idle = Idle::new(ACTIVITY.load(Ordering::Relaxed));
    loop {
        tokio::time::sleep(quiet).await;
        if idle.tick(ACTIVITY.load(Ordering::Relaxed)) {
            // Inline: a trim of berthd's small heap takes well under a millisecond, and a
            // blocking-pool thread started for it would itself stay for 10 s.
            trim_heap();
        }
    }
}

/// When to trim: at the first quiet tick after a tick that saw activity, once per burst.
struct Idle {
    seen: u64,
    dirty: bool,
}

impl Idle {
    fn new(seen: u64) -> Idle {
        Idle { seen, dirty: false }
    }

    /// One tick, with the activity counter as it is now: whether to trim.
    fn tick(&mut self, now: u64) -> bool {
        if now != self.seen {
            self.seen = now;
            self.dirty = true;
            false
        } else {
            std::mem::replace(&mut self.dirty, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_are_added_once_and_the_users_kept() {
        assert_eq!(
            plan_tunables(None, None),
            Tunables::Restart {
                tunables: "glibc.malloc.tcache_max=128:glibc.pthread.stack_cache_size=0".into(),
                had: None
            }
        );
        assert_eq!(plan_tunables(Some(""), None), plan_tunables(None, None));
        assert_eq!(
            plan_tunables(Some("glibc.malloc.arena_max=2"), None),
            Tunables::Restart {
                tunables: "glibc.malloc.arena_max=2:glibc.malloc.tcache_max=128:glibc.pthread.stack_cache_size=0".into(),
                had: Some("glibc.malloc.arena_max=2".into())
            }
        );
        // The user's own stack cache size stays.
        assert_eq!(
            plan_tunables(Some("glibc.pthread.stack_cache_size=1048576"), None),
            Tunables::Restart {
                tunables: "glibc.pthread.stack_cache_size=1048576:glibc.malloc.tcache_max=128"
                    .into(),
                had: Some("glibc.pthread.stack_cache_size=1048576".into())
            }
        );
        assert_eq!(
            plan_tunables(Some("glibc.malloc.tcache_count=0"), None),
            Tunables::Keep
        );
        // The second start restores what the first one had.
        assert_eq!(
            plan_tunables(Some("glibc.malloc.tcache_max=128"), Some("")),
            Tunables::Restore(None)
        );
        assert_eq!(
            plan_tunables(
                Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_max=128"),
                Some("glibc.malloc.arena_max=2")
            ),
            Tunables::Restore(Some("glibc.malloc.arena_max=2".into()))
        );
    }

    #[test]
    fn trims_once_per_burst_after_a_quiet_tick() {
        let mut idle = Idle::new(0);
        // Quiet from the start: nothing to give back.
        assert!(!idle.tick(0));
        // A burst over two ticks, then quiet: one trim.
        assert!(!idle.tick(5));
        assert!(!idle.tick(9));
        assert!(idle.tick(9));
        assert!(!idle.tick(9));
        assert!(!idle.tick(9));
        // The next burst trims again.
        assert!(!idle.tick(10));
        assert!(idle.tick(10));
    }
}
