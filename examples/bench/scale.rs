//! `--scale`: do reads stay fast as tables grow, and does the WAL stay bounded while they do?
//!
//! Fills the key-value store and the user table through the public API to 10^4 rows, measures
//! random `kv.get` and `get_user_by_email`, fills on to the target (10^6 by default) and
//! measures again. Each size is measured after a discarded warm-up round of reads of other
//! keys, so that what is timed is reading a table of that size, not the first touches after a
//! bulk load. On SQLite the database file's size and the largest WAL seen during the whole
//! run (sampled every 50 ms) are reported too. Then every key is listed, and a table's
//! partition filled and queried, beside the raw driver (see `listing.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use storekit::futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit::{BoxError, DynAuthStore, DynKvStore, NewUser, Stores};

use crate::Plan;
use crate::listing::{self, Listing};
use crate::measure::{Mode, Op, Runner, Sample, expect, scatter};
use crate::raw_scale::RawListings;
use crate::targets::PASSWORD_HASH;
use crate::workloads::VALUE_SIZE;

/// The size reads are first measured at, the baseline of the ratio.
const SMALL: usize = 10_000;
/// Items per `set_many` call while filling, and calls in flight.
const FILL_BATCH: usize = 1000;
const FILL_BATCHES_IN_FLIGHT: usize = 4;
/// How often to report progress while filling.
const PROGRESS_EVERY: usize = 100_000;
const NAMESPACE: &str = "scale";

/// One measurement at one table size.
#[derive(Debug)]
pub(crate) struct ScalePoint {
    pub(crate) rows: usize,
    pub(crate) sample: Sample,
}

/// What a `--scale` run found.
#[derive(Debug)]
pub(crate) struct ScaleReport {
    pub(crate) backend: &'static str,
    pub(crate) rows: usize,
    pub(crate) fill_secs: f64,
    pub(crate) points: Vec<ScalePoint>,
    pub(crate) db_bytes: Option<u64>,
    pub(crate) wal_max_bytes: Option<u64>,
    pub(crate) wal_end_bytes: Option<u64>,
    /// Every key listed, and a table's partition queried, by storekit and the raw driver.
    pub(crate) listings: Vec<Listing>,
}

struct Ctx {
    kv: Arc<DynKvStore>,
    auth: Arc<DynAuthStore>,
    rows: usize,
    /// Where in the pseudo-random sequence of keys the reads start.
    seed: usize,
}

fn key(i: usize) -> String {
    format!("item-{i}")
}

fn email(i: usize) -> String {
    format!("scale-{i}@bench.example")
}

/// Fills `stores` to `rows` items and users and measures reads on the way, then the listings
/// (beside `raw`, the backend's raw driver on the same database); `db` is the SQLite file,
/// whose sizes are then reported.
pub(crate) async fn run(
    backend: &'static str,
    stores: &Stores,
    raw: Option<&dyn RawListings>,
    db: Option<&Path>,
    rows: usize,
    plan: &Plan,
) -> Result<ScaleReport, BoxError> {
    let wal = db.map(|db| WalWatch::start(wal_path(db)));
    let (kv, auth) = (stores.kv(), stores.auth());
    let mut points = Vec::new();
    let mut fill_secs = 0.0;
    let mut filled = 0;
    for size in [SMALL.min(rows), rows] {
        let started = Instant::now();
        fill(&kv, &auth, filled..size, plan.concurrency).await?;
        fill_secs += started.elapsed().as_secs_f64();
        filled = size;
        // A warm-up round on other keys first, discarded: right after a bulk fill the file's
        // pages are still being written back and are not yet mapped by the readers, and the
        // first reads would time that, not reads of a table of this size.
        let warm_up = Arc::new(Ctx {
            kv: kv.clone(),
            auth: auth.clone(),
            rows: size,
            seed: 1 << 40,
        });
        let warm_up_runner = plan.runner("storekit", Mode::Concurrent(plan.concurrency), None);
        measure_reads(&warm_up_runner, &warm_up).await;
        let ctx = Arc::new(Ctx {
            kv: kv.clone(),
            auth: auth.clone(),
            rows: size,
            seed: 0,
        });
        for mode in [Mode::Seq, Mode::Concurrent(plan.concurrency)] {
            for sample in measure_reads(&plan.runner("storekit", mode, None), &ctx).await {
                points.push(ScalePoint { rows: size, sample });
            }
        }
        if size == rows {
            break;
        }
    }
    for point in &mut points {
        point.sample.backend = backend;
    }
    // The file's sizes are those the fill left, before the listings add a table.
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).ok();
    let (db_bytes, wal_max_bytes) = (db.and_then(size), wal.map(WalWatch::stop));
    let wal_end_bytes = db.and_then(|db| size(&wal_path(db)));
    let listings = listing::run(stores, raw, NAMESPACE, rows).await?;
    Ok(ScaleReport {
        backend,
        rows,
        fill_secs,
        points,
        db_bytes,
        wal_max_bytes,
        wal_end_bytes,
        listings,
    })
}

async fn measure_reads(runner: &Runner, ctx: &Arc<Ctx>) -> Vec<Sample> {
    let get = Op {
        workload: "scale",
        name: "kv.get",
        batch: 1,
    };
    let by_email = Op {
        workload: "scale",
        name: "get_user_by_email",
        batch: 1,
    };
    let count = usize::MAX;
    vec![
        runner
            .run(get, ctx, count, |c, i| async move {
                let value =
                    c.kv.get(NAMESPACE, &key(scatter(c.seed + i, c.rows)))
                        .await?;
                expect(value.is_some(), "kv.get missed a filled key")?;
                Ok(1)
            })
            .await,
        runner
            .run(by_email, ctx, count, |c, i| async move {
                let user = c
                    .auth
                    .get_user_by_email(&email(scatter(c.seed + i, c.rows)))
                    .await?;
                expect(user.is_some(), "get_user_by_email missed a filled user")?;
                Ok(1)
            })
            .await,
    ]
}

/// Adds items and users `range` (kv in batches, users by concurrent creates), reporting
/// progress on stderr.
async fn fill(
    kv: &Arc<DynKvStore>,
    auth: &Arc<DynAuthStore>,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<(), BoxError> {
    let value = vec![0xCD; VALUE_SIZE];
    let mut start = range.start;
    while start < range.end {
        let end = (start + PROGRESS_EVERY).min(range.end);
        let batches = (start..end)
            .step_by(FILL_BATCH)
            .map(|from| from..(from + FILL_BATCH).min(end));
        stream::iter(batches)
            .map(|batch| {
                let keys: Vec<String> = batch.map(key).collect();
                let value = &value;
                async move {
                    let items: Vec<(&str, &[u8])> =
                        keys.iter().map(|k| (k.as_str(), &value[..])).collect();
                    kv.set_many(NAMESPACE, &items, None).await
                }
            })
            .buffer_unordered(FILL_BATCHES_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        stream::iter(start..end)
            .map(|i| auth.create_user(NewUser::new(email(i), PASSWORD_HASH)))
            .buffer_unordered(concurrency.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await?;
        eprintln!(
            "bench: scale: filled {end} of {} items and users",
            range.end
        );
        start = end;
    }
    Ok(())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    path.into()
}

/// The largest size a file reached, sampled in the background.
struct WalWatch {
    largest: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl WalWatch {
    fn start(path: PathBuf) -> Self {
        let largest = Arc::new(AtomicU64::new(0));
        let seen = largest.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(meta) = std::fs::metadata(&path) {
                    seen.fetch_max(meta.len(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { largest, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.largest.load(Ordering::Relaxed)
    }
}
