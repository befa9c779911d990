//! `--scale`'s listings: reading a whole large listing, by storekit and by the raw driver of
//! the same backend, on the same rows of the same database (see `raw_scale.rs` for the raw
//! side):
//! - `kv.keys`: every key of the namespace `--scale` filled (`--scale-rows`, 10^6), through
//!   `kv.keys(namespace, "")` read to its end;
//! - `Table::query`: a partition of [`PARTITION_RECORDS`] records (10^5, or a tenth of
//!   `--scale-rows` when that is fewer) of a table keyed by partition and sort key, filled by
//!   `Table::put_many` and read with `Table::query` pages of [`MAX_PAGE`] records (the largest
//!   a query returns: a reader of a whole partition asks for it), each following the last
//!   page's `next` cursor.
//!
//! Each read is timed whole, and must return every item (and the records in sort-key order),
//! or its row counts an error. Each peer reads twice, storekit first and then the raw driver
//! first, and keeps its faster read, so that neither is the only one to find the pages cached.
//! The process's peak memory is reset before each read: how far it rises above the memory
//! in use at the start (the larger of the two reads) is the read's peak-memory effect, the
//! memory it held beyond what the process already had; a few MiB at most means it streams.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use storekit::futures::future::BoxFuture;
use storekit::futures::{FutureExt as _, StreamExt as _, TryStreamExt as _, stream};
use storekit::table::{KeyDef, MAX_BATCH, MAX_PAGE, Query, Table, TableSchema};
use storekit::{BoxError, DynKvStore, Stores};

use crate::measure::{expect, with_sources};
use crate::peak;
use crate::raw_scale::RawListings;

/// The most records of the partition read by `Table::query`.
pub(crate) const PARTITION_RECORDS: usize = 100_000;
/// The table, and its one partition.
const TABLE: &str = "scale_events";
const PARTITION: &str = "stream-0";
/// `put_many` calls in flight while filling, as `--scale` fills the kv store.
const FILL_BATCHES_IN_FLIGHT: usize = 4;
/// How often to report progress while filling.
const PROGRESS_EVERY: usize = 20_000;
/// Reads per peer and listing, alternating which peer goes first.
const ROUNDS: usize = 2;

/// A record of the table: one event of a stream, by its sequence number (~200 bytes of JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Event {
    pub(crate) stream: String,
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) amount_cents: i64,
    pub(crate) note: String,
}

fn event(seq: usize) -> Event {
    Event {
        stream: PARTITION.to_owned(),
        seq: seq as i64,
        kind: ["purchase", "refund", "transfer"][seq % 3].to_owned(),
        amount_cents: (seq * 7919 % 100_000) as i64,
        note: format!("{seq:07} {:-<96}", "event of the scale partition "),
    }
}

/// Counts records, checking that each comes after the last in sort-key order.
#[derive(Debug, Default)]
pub(crate) struct Ascending {
    pub(crate) count: u64,
    last: Option<i64>,
}

impl Ascending {
    pub(crate) fn add(&mut self, event: &Event) -> Result<(), BoxError> {
        expect(
            self.last.is_none_or(|last| last < event.seq),
            "the partition's records came out of sort-key order",
        )?;
        self.last = Some(event.seq);
        self.count += 1;
        Ok(())
    }
}

/// One peer's read of a whole listing: its faster round.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) secs: f64,
    /// Keys or records read; 0 when the read failed or missed some.
    pub(crate) items: u64,
    pub(crate) errors: u64,
    /// How far the process's peak RSS rose above its RSS at the start of a read, in KiB.
    pub(crate) peak_growth_kib: Option<u64>,
}

impl Read {
    pub(crate) fn per_sec(&self) -> f64 {
        self.items as f64 / self.secs.max(1e-9)
    }
}

/// A listing read by both peers.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) op: &'static str,
    pub(crate) rows: usize,
    /// How long filling took, for what `--scale`'s fill did not already fill.
    pub(crate) fill_secs: Option<f64>,
    pub(crate) storekit: Read,
    /// `None` on the memory backend, which has no driver.
    pub(crate) raw: Option<Read>,
}

impl Listing {
    /// storekit's rate over the raw driver's (above 1: storekit is faster).
    pub(crate) fn ratio(&self) -> Option<f64> {
        self.raw
            .as_ref()
            .map(|raw| self.storekit.per_sec() / raw.per_sec().max(1e-9))
    }
}

/// One whole read of a listing; returns the items read.
type Reader<'a> = Box<dyn Fn() -> BoxFuture<'a, Result<u64, BoxError>> + 'a>;

/// Reads the `rows` keys of `namespace`, then fills and reads a table's partition, with
/// storekit and (where there is one) the raw driver.
pub(crate) async fn run(
    stores: &Stores,
    raw: Option<&dyn RawListings>,
    namespace: &str,
    rows: usize,
) -> Result<Vec<Listing>, BoxError> {
    eprintln!("bench: scale: listing the {rows} keys ...");
    let store = stores.kv();
    let kv = &*store;
    let kit: Reader<'_> = Box::new(move || count_keys(kv, namespace).boxed());
    let raw_keys = raw.map(|raw| Box::new(move || raw.count_keys(namespace)) as Reader<'_>);
    let keys = compare("kv.keys", rows, &kit, raw_keys.as_ref()).await;

    let size = PARTITION_RECORDS.min(rows / 10).max(1);
    let table: Table<Event> = Table::new(
        stores.tables(),
        TableSchema::builder(TABLE, KeyDef::text("stream"))
            .sort_key(KeyDef::int("seq"))
            .build()?,
    );
    table.ensure().await?;
    let started = Instant::now();
    fill(&table, size).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    eprintln!("bench: scale: querying the partition of {size} records ...");
    let table_ref = &table;
    let kit: Reader<'_> = Box::new(move || query_partition(table_ref).boxed());
    let raw_partition =
        raw.map(|raw| Box::new(move || raw.read_partition(TABLE, PARTITION)) as Reader<'_>);
    let mut partition = compare("Table::query", size, &kit, raw_partition.as_ref()).await;
    partition.fill_secs = Some(fill_secs);
    table.drop().await?;
    Ok(vec![keys, partition])
}

/// Each peer's faster of [`ROUNDS`] reads, the peers taking turns to go first.
async fn compare(
    op: &'static str,
    rows: usize,
    storekit: &Reader<'_>,
    raw: Option<&Reader<'_>>,
) -> Listing {
    let (mut kit_reads, mut raw_reads) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let raw_first = round % 2 == 1;
        let raw_read = async {
            if let Some(raw) = raw {
                raw_reads.push(timed("raw", op, rows, raw()).await);
            }
        };
        if raw_first {
            raw_read.await;
            kit_reads.push(timed("storekit", op, rows, storekit()).await);
        } else {
            kit_reads.push(timed("storekit", op, rows, storekit()).await);
            raw_read.await;
        }
    }
    Listing {
        op,
        rows,
        fill_secs: None,
        storekit: fastest(kit_reads),
        raw: raw.map(|_| fastest(raw_reads)),
    }
}

/// The fastest read, or a failed one if any failed, so that the row shows the failure; with
/// the largest peak-memory growth of the reads, since the allocator keeps what a read freed
/// and the next read reuses it unseen.
fn fastest(reads: Vec<Read>) -> Read {
    let growth = reads.iter().filter_map(|read| read.peak_growth_kib).max();
    let failed = reads.iter().find(|read| read.errors > 0).cloned();
    let read = failed.or_else(|| reads.into_iter().min_by(|a, b| a.secs.total_cmp(&b.secs)));
    Read {
        peak_growth_kib: growth,
        ..read.unwrap_or(Read {
            secs: 0.0,
            items: 0,
            errors: 1,
            peak_growth_kib: None,
        })
    }
}

/// Times one read and checks that it read `rows` items.
async fn timed(
    peer: &str,
    op: &str,
    rows: usize,
    read: BoxFuture<'_, Result<u64, BoxError>>,
) -> Read {
    let ((outcome, secs), peak_growth_kib) = peak::growth(async {
        let started = Instant::now();
        let outcome = read.await;
        (outcome, started.elapsed().as_secs_f64())
    })
    .await;
    let checked = outcome.and_then(|items| {
        expect(
            items == rows as u64,
            &format!("read {items} items of the {rows} filled"),
        )?;
        Ok(items)
    });
    let (items, errors) = match checked {
        Ok(items) => (items, 0),
        Err(error) => {
            eprintln!("bench: {peer} scale {op}: {}", with_sources(&*error));
            (0, 1)
        }
    };
    Read {
        secs,
        items,
        errors,
        peak_growth_kib,
    }
}

async fn count_keys(kv: &DynKvStore, namespace: &str) -> Result<u64, BoxError> {
    let keys = kv.keys(namespace, "");
    Ok(keys.try_fold(0, |n, _key| async move { Ok(n + 1) }).await?)
}

async fn query_partition(table: &Table<Event>) -> Result<u64, BoxError> {
    let first = Query::table(PARTITION).limit(MAX_PAGE);
    let mut query = first.clone();
    let mut ascending = Ascending::default();
    loop {
        let page = table.query(query).await?;
        for found in &page.items {
            ascending.add(&found.record)?;
        }
        match page.next {
            Some(cursor) => query = first.clone().after(cursor),
            None => return Ok(ascending.count),
        }
    }
}

/// Writes events `0..size` of the partition, [`MAX_BATCH`] per `put_many` call, reporting
/// progress on stderr.
async fn fill(table: &Table<Event>, size: usize) -> Result<(), BoxError> {
    let mut start = 0;
    while start < size {
        let end = (start + PROGRESS_EVERY).min(size);
        let batches = (start..end)
            .step_by(MAX_BATCH)
            .map(|from| from..(from + MAX_BATCH).min(end));
        stream::iter(batches)
            .map(|batch| async move {
                let events: Vec<Event> = batch.map(event).collect();
                table.put_many(&events).await.map(drop)
            })
            .buffer_unordered(FILL_BATCHES_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        eprintln!("bench: scale: filled {end} of {size} records of the partition");
        start = end;
    }
    Ok(())
}
