//! Cases for how long one call may hold the thread that polls it: big batches yield or move
//! their work off the runtime, so that a `current_thread` runtime (a test, a small service,
//! a per-core server) keeps running its other tasks while a batch is written.
//!
//! The measure is a heartbeat task, woken every millisecond on the same runtime as the call:
//! the longest the runtime thread went without running it is the longest hold. On Linux the
//! time the kernel kept the thread waiting for a CPU (`/proc/thread-self/schedstat`) is taken
//! out of each gap, so a busy two-core machine preempting the thread is not counted as the
//! library holding it; elsewhere the whole gap counts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Fixture;

/// The longest a call may hold the runtime thread (issue: a 100,000-item batch never delays
/// a heartbeat by more than 20 ms).
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// Items in the batch the cases write.
const ITEMS: usize = 100_000;

/// Runs of a case before it fails: a hold the library causes happens on every run, a stall
/// of the machine (a page fault under memory pressure, a descheduled VM) on one at most.
const RUNS: usize = 3;

/// What a heartbeat saw while a call ran.
#[derive(Debug, Clone, Copy)]
pub struct Holds {
    /// The longest the runtime thread went without running the heartbeat, less the time the
    /// kernel kept it waiting for a CPU.
    pub longest: Duration,
    /// When the longest hold ended, from the start of the work.
    pub longest_at: Duration,
    /// The longest gap as the wall clock saw it.
    pub longest_wall: Duration,
    /// Heartbeats that ran.
    pub beats: u64,
}

/// Work to run on the measured runtime.
pub type Work = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Nanoseconds this thread has waited for a CPU while runnable, if the kernel says.
fn runqueue_wait() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `work` to its end on a new `current_thread` runtime, in a thread of its own, beside a
/// heartbeat task woken every millisecond, and says how long the runtime thread was held.
///
/// The stores the work uses may have been built on another runtime: what is measured is the
/// thread that polls the call, which is where a call that does not yield holds things up.
pub async fn holds_during(work: Work) -> Holds {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current_thread runtime");
        let holds = runtime.block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let heartbeat = tokio::spawn(heartbeat(stop.clone()));
            // Let the heartbeat take its first reading before the work starts.
            tokio::task::yield_now().await;
            work().await;
            stop.store(true, Ordering::Relaxed);
            heartbeat.await.expect("the heartbeat panicked")
        });
        let _ = done.send(holds);
    });
    finished.await.expect("the measured work panicked")
}

async fn heartbeat(stop: Arc<AtomicBool>) -> Holds {
    let start = Instant::now();
    let mut holds = Holds {
        longest: Duration::ZERO,
        longest_at: Duration::ZERO,
        longest_wall: Duration::ZERO,
        beats: 0,
    };
    let (mut last, mut waited) = (Instant::now(), runqueue_wait());
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (now, now_waited) = (Instant::now(), runqueue_wait());
        let gap = now - last;
        let preempted = match (waited, now_waited) {
            (Some(before), Some(after)) => Duration::from_nanos(after.saturating_sub(before)),
            _ => Duration::ZERO,
        };
        let held = gap.saturating_sub(preempted);
        if held > holds.longest {
            (holds.longest, holds.longest_at) = (held, now - start);
        }
        holds.longest_wall = holds.longest_wall.max(gap);
        holds.beats += 1;
        (last, waited) = (now, now_waited);
    }
    holds
}

/// Measures `work` up to [`RUNS`] times and panics, naming `what`, if every run held the
/// runtime longer than [`MAX_HOLD`].
async fn assert_short_holds(what: &str, mut work: impl FnMut() -> Work) {
    let mut seen = Vec::new();
    for _ in 0..RUNS {
        let holds = holds_during(work()).await;
        assert!(holds.beats > 0, "{what}: the heartbeat never ran");
        if holds.longest <= MAX_HOLD {
            return;
        }
        seen.push(holds);
    }
    panic!("{what} held a current_thread runtime longer than {MAX_HOLD:?} on every run: {seen:?}");
}

/// A 100,000-item `set_many`, then a `delete_many` of the same keys, each on a
/// `current_thread` runtime: neither holds the runtime thread for more than 20 ms at a time,
/// and both do their work (a sample of keys is there after the one, gone after the other).
pub async fn kv_big_batches_never_hold_the_runtime(f: &Fixture) {
    let keys: Arc<Vec<String>> = Arc::new((0..ITEMS).map(|i| format!("held-{i:06}")).collect());
    let sample: Vec<String> = keys.iter().step_by(ITEMS / 100).cloned().collect();
    let sample: Vec<&str> = sample.iter().map(String::as_str).collect();

    let (kv, all) = (f.kv.clone(), keys.clone());
    assert_short_holds("set_many of 100,000 items", || {
        let (kv, keys) = (kv.clone(), all.clone());
        Box::new(move || {
            Box::pin(async move {
                let items: Vec<(&str, &[u8])> = keys
                    .iter()
                    .map(|k| (k.as_str(), &b"0123456789abcdef"[..]))
                    .collect();
                kv.set_many("held", &items, None).await.expect("set_many");
            })
        })
    })
    .await;
    let written = f.kv.get_many("held", &sample).await.expect("get_many");
    assert!(
        written.iter().all(Option::is_some),
        "set_many wrote every item"
    );

    let (kv, all) = (f.kv.clone(), keys.clone());
    assert_short_holds("delete_many of 100,000 keys", || {
        let (kv, keys) = (kv.clone(), all.clone());
        Box::new(move || {
            Box::pin(async move {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                kv.delete_many("held", &keys).await.expect("delete_many");
            })
        })
    })
    .await;
    let left = f.kv.get_many("held", &sample).await.expect("get_many");
    assert!(
        left.iter().all(Option::is_none),
        "delete_many deleted every item"
    );
}
