//! `--copy`: is `storekit copy` of kv items from SQLite into PostgreSQL at least half as fast
//! as a hand-written copy with the raw drivers on the same server?
//!
//! A temporary SQLite store is filled once through storekit (`set_many`, 1,000 keys at a time,
//! four at once) with `--copy-rows` items (100,000) of 1 KiB in one namespace, every fourth
//! item with a TTL of a day. Then, in each round, on fresh tables of the same PostgreSQL
//! server:
//! - `storekit`: [`storekit::copy::copy`] of the kv items, with [`CopyOptions`]' defaults
//!   (batches of 500, four writes in flight) and its verification off, so that the copy alone
//!   is timed; the destination's count is checked afterwards, untimed;
//! - `raw`: what a careful hand-written copy does: one rusqlite `SELECT` of the live items in
//!   key order, streamed from the same SQLite file on a blocking thread in batches of the same
//!   size, each batch one sqlx `INSERT … SELECT FROM UNNEST … ON CONFLICT` upsert (with its
//!   deadline) into the raw baseline's kv table, as many in flight as storekit's. The read is
//!   part of what is timed, as it is in the copy; it is also timed alone for each peer
//!   (storekit's `export_kv` pages, and the rusqlite scan), so that the report shows how much
//!   of the copy's time reading takes.
//!
//! The rate is items per second over the whole copy. With `--rounds`, storekit goes first in odd
//! rounds and the raw copy in even ones, and the median round is kept.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use storekit::copy::{CopyOptions, Kind, NoProgress};
use storekit::futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit::stats::{self, Scope};
use storekit::transfer::KvPosition;
use storekit::{BoxError, Stores};
use tokio::sync::mpsc;

use crate::backends::{TempDir, postgres_url, run_tag, sqlite_stores, with_param};
use crate::measure::{self, Mode, Op, Sample, with_sources};
use crate::raw_postgres::{self, CopiedItem, RawPostgres};
use crate::workloads::VALUE_SIZE;

const NAMESPACE: &str = "copy";
/// Items per `set_many` call while filling the source, and calls in flight, as `--scale` fills.
const FILL_BATCH: usize = 1000;
const FILL_BATCHES_IN_FLIGHT: usize = 4;
/// Every this many items has a TTL; the others none.
const TTL_EVERY: usize = 4;
/// Long enough that no item expires during a run: both peers copy all of them.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// What a `--copy` run found.
#[derive(Debug)]
pub(crate) struct CopyReport {
    pub(crate) rows: usize,
    pub(crate) fill_secs: f64,
    /// storekit's and the raw copy's measurement, from the median round.
    pub(crate) samples: Vec<Sample>,
    /// Items per second of reading the source alone: storekit's `export_kv` pages and the raw
    /// rusqlite scan.
    pub(crate) read_only: (f64, f64),
}

/// The op of both rows: named with the number of items, since the rate counts items.
fn op(rows: usize) -> Op {
    Op {
        workload: "copy",
        name: "copy sqlite→postgres",
        batch: rows,
    }
}

/// Fills a SQLite store with `rows` items, then copies them into PostgreSQL `rounds` times
/// with each peer, on fresh tables each time, and removes everything it created.
pub(crate) async fn run(rows: usize, rounds: usize) -> Result<CopyReport, BoxError> {
    let options = CopyOptions {
        only: Some(Kind::Kv),
        verify: false,
        ..CopyOptions::default()
    };
    let dir = TempDir::new()?;
    let path = dir.0.join("copy-source.db");
    let source = sqlite_stores(&path).await?;
    eprintln!("bench: copy: filling SQLite with {rows} items ...");
    let started = Instant::now();
    fill(&source, rows).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    // The fill's WAL into the database file, so that neither peer reads through it or pays
    // for a checkpoint that the other did not.
    let table = format!("{}_kv", run_tag());
    checkpoint(&path)?;

    let read_only = (
        rate(rows, time_export(&source, options.batch).await?),
        rate(rows, time_raw_read(&path, &table, options.batch).await?),
    );

    let url = postgres_url();
    let mut all = Vec::new();
    for round in 1..=rounds {
        eprintln!("bench: copy: round {round} of {rounds} ...");
        let raw_first = round % 2 == 0;
        let schema = format!("{}_copy{round}", run_tag());
        let destination = storekit::connect(&with_param(&url, &format!("schema={schema}"))).await?;
        destination.migrate().await?;
        let raw = RawPostgres::create(&url, &format!("{schema}_raw")).await?;
        let kit = async { storekit_copy(&source, &destination, &options, rows).await };
        let baseline = async { raw_copy(&path, &table, &raw, &options, rows).await };
        let (kit, baseline) = if raw_first {
            let baseline = baseline.await;
            (kit.await, baseline)
        } else {
            let kit = kit.await;
            (kit, baseline.await)
        };
        // What the round created is removed even when it failed.
        raw.remove().await?;
        raw_postgres::drop_storekit_schema(&url, &schema).await?;
        all.push(vec![kit, baseline]);
    }
    let mut samples = measure::median_of(all);
    for sample in &mut samples {
        sample.backend = "postgres";
    }
    Ok(CopyReport {
        rows,
        fill_secs,
        samples,
        read_only,
    })
}

fn rate(items: usize, elapsed: Duration) -> f64 {
    items as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Item `i`'s key, and its value: 1 KiB, distinct per item.
fn key(i: usize) -> String {
    format!("item-{i:07}")
}

fn value(i: usize) -> Vec<u8> {
    let mut value = vec![0xCD; VALUE_SIZE];
    value[..8].copy_from_slice(&(i as u64).to_le_bytes());
    value
}

async fn fill(stores: &Stores, rows: usize) -> Result<(), BoxError> {
    let kv = stores.kv();
    let batches = (0..rows)
        .step_by(FILL_BATCH)
        .map(|from| from..(from + FILL_BATCH).min(rows));
    stream::iter(batches)
        .map(|batch| {
            let kv = kv.clone();
            async move {
                let items: Vec<(usize, String, Vec<u8>)> =
                    batch.map(|i| (i, key(i), value(i))).collect();
                // A TTL applies to a whole call: the items that have one go in a call of their
                // own, so that they are spread over the keys.
                for with_ttl in [false, true] {
                    let items: Vec<(&str, &[u8])> = items
                        .iter()
                        .filter(|(i, _, _)| (i % TTL_EVERY == TTL_EVERY - 1) == with_ttl)
                        .map(|(_, k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    if !items.is_empty() {
                        kv.set_many(NAMESPACE, &items, with_ttl.then_some(TTL))
                            .await?;
                    }
                }
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(FILL_BATCHES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

fn checkpoint(path: &Path) -> Result<(), BoxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// storekit's copy, timed alone, then the destination counted.
async fn storekit_copy(
    source: &Stores,
    destination: &Stores,
    options: &CopyOptions,
    rows: usize,
) -> Sample {
    let started = Instant::now();
    let copied = storekit::copy::copy(source, destination, options, &NoProgress).await;
    let elapsed = started.elapsed();
    let checked = async {
        let summary = copied?;
        let scope = Scope {
            only: Some(Kind::Kv),
            namespace: None,
        };
        let found = stats::stats(destination, &scope).await?.kv_items();
        check_count("storekit", rows, summary.kv_items, found)
    }
    .await;
    sample("storekit", options, rows, elapsed, checked)
}

/// The raw copy, timed, then the destination counted.
async fn raw_copy(
    path: &Path,
    table: &str,
    raw: &RawPostgres,
    options: &CopyOptions,
    rows: usize,
) -> Sample {
    let started = Instant::now();
    let copied = raw_copy_items(path, table, raw, options).await;
    let elapsed = started.elapsed();
    let checked = async {
        let written = copied?;
        let found = raw.count_kv_rows().await?;
        check_count("raw", rows, written, found)
    }
    .await;
    sample("raw", options, rows, elapsed, checked)
}

/// Every live item of the SQLite store's kv table, read on a blocking thread in batches that
/// are written `options.parallel` at a time as they come; returns the items written.
async fn raw_copy_items(
    path: &Path,
    table: &str,
    raw: &RawPostgres,
    options: &CopyOptions,
) -> Result<u64, BoxError> {
    let (pages, received) = mpsc::channel::<Vec<CopiedItem>>(options.parallel);
    let reader = {
        let (path, table, batch) = (path.to_owned(), table.to_owned(), options.batch);
        tokio::task::spawn_blocking(move || {
            read_live_items(&path, &table, batch, |page| {
                // The writer only stops early on an error, which it reports.
                pages.blocking_send(page).is_ok()
            })
        })
    };
    let received = stream::unfold(received, |mut received| async move {
        received.recv().await.map(|page| (page, received))
    });
    let written = received
        .map(|page| async move {
            raw.import_kv(&page).await?;
            Ok::<_, BoxError>(page.len() as u64)
        })
        .buffer_unordered(options.parallel)
        .try_fold(0_u64, |written, n| async move { Ok(written + n) })
        .await;
    let read = reader.await?;
    let written = written?;
    read?;
    Ok(written)
}

/// Scans the live items of `table` in key order in one statement, handing them to `page` in
/// batches of `batch`, until the end or until `page` returns false; returns the items read.
fn read_live_items(
    path: &Path,
    table: &str,
    batch: usize,
    mut page: impl FnMut(Vec<CopiedItem>) -> bool,
) -> Result<u64, BoxError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The table name is the bench's own `bench_<pid>_kv`, never outside input.
    let mut scan = conn.prepare(&format!(
        "SELECT namespace, key, value, expires_at FROM \"{table}\" \
         WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY namespace, key"
    ))?;
    let now = storekit::now().timestamp_millis();
    let mut rows = scan.query([now])?;
    let (mut read, mut current) = (0_u64, Vec::with_capacity(batch));
    while let Some(row) = rows.next()? {
        current.push(CopiedItem {
            namespace: row.get(0)?,
            key: row.get(1)?,
            value: row.get(2)?,
            expires_at: row.get(3)?,
        });
        read += 1;
        if current.len() == batch
            && !page(std::mem::replace(&mut current, Vec::with_capacity(batch)))
        {
            return Ok(read);
        }
    }
    if !current.is_empty() {
        page(current);
    }
    Ok(read)
}

/// How long storekit's `export_kv` takes to page through the source alone.
async fn time_export(source: &Stores, batch: usize) -> Result<Duration, BoxError> {
    let transfer = source.transfer();
    let started = Instant::now();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = transfer.export_kv(None, after.as_ref(), batch).await?;
        match page.last() {
            Some(last) if page.len() == batch => after = Some(last.position()),
            _ => return Ok(started.elapsed()),
        }
    }
}

/// How long the raw copy's SQLite scan takes alone.
async fn time_raw_read(path: &Path, table: &str, batch: usize) -> Result<Duration, BoxError> {
    let (path, table) = (path.to_owned(), table.to_owned());
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        read_live_items(&path, &table, batch, |page| {
            std::hint::black_box(page);
            true
        })?;
        Ok(started.elapsed())
    })
    .await?
}

/// An error unless the copy wrote `rows` items and the destination holds as many.
fn check_count(peer: &str, rows: usize, written: u64, found: u64) -> Result<u64, BoxError> {
    if written != rows as u64 || found != rows as u64 {
        return Err(format!(
            "{peer} copy: {written} items written and {found} in the destination, of {rows}"
        )
        .into());
    }
    Ok(found)
}

/// One measured copy: one call of `rows` items, or an error row.
fn sample(
    peer: &'static str,
    options: &CopyOptions,
    rows: usize,
    elapsed: Duration,
    outcome: Result<u64, BoxError>,
) -> Sample {
    let (items, errors, latencies) = match outcome {
        Ok(items) => (items, 0, vec![elapsed]),
        Err(error) => {
            eprintln!(
                "bench: {peer} copy sqlite→postgres: {}",
                with_sources(&*error)
            );
            (0, 1, Vec::new())
        }
    };
    Sample {
        backend: "postgres",
        peer,
        op: op(rows),
        mode: Mode::Concurrent(options.parallel),
        calls: 1,
        items,
        errors,
        elapsed,
        latencies,
        requests: None,
    }
}
