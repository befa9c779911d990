//! A filtered page read as a few bounded reads, each continuing after the last record the one
//! before it read.
//!
//! A filtered read without a read budget may have to read its whole range to fill its page,
//! but most pages fill within a few records. Both drivers first read such a page in chunks of
//! a bounded number of records, and only what is left of it without a bound:
//! - SQLite, so that the runtime thread is never held longer than one short statement;
//! - PostgreSQL, so that its planner, told how far the read goes, walks the index in the
//!   range's order and stops at the page's last hit, where an unbounded read of a window
//!   function made it read the whole range and sort it (18 ms against 0.3 ms for a page of 20
//!   in a range of 400).
//!
//! The chunks together are one read: no record is read twice, and the page, its counts and its
//! cut are what one read would have found.

use std::future::Future;

use storekit_core::Result;
use storekit_core::table::{
    Document, Fetched, IndexQuery, Position, RecordKey, StoredRecord, TableScan, TableSchema,
};

use crate::table_layout::{Layout, Read};

/// A page of `query` on `schema` (laid out by `layout`) read in chunks of `budgets` records,
/// then the rest (see [`read_in_chunks`]), each chunk run by `run`; `backend` names the
/// store in errors.
pub(crate) async fn query_in_chunks<Fut>(
    layout: &Layout,
    schema: &TableSchema,
    backend: &'static str,
    query: &IndexQuery<'_>,
    budgets: &[u64],
    run: impl Fn(Read) -> Fut,
) -> Result<Fetched<StoredRecord>>
where
    Fut: Future<Output = Result<Fetched<StoredRecord>>>,
{
    let read = |after: Option<&Position>, fetch, budget| {
        layout.query(&IndexQuery {
            after,
            fetch,
            budget,
            ..*query
        })
    };
    let position = |cut: &Document| query.position_of_document(schema, cut, backend);
    read_in_chunks(
        query.after.cloned(),
        query.fetch,
        budgets,
        read,
        run,
        position,
    )
    .await
}

/// A page of `scan` on `schema`, as [`query_in_chunks`] reads a query's.
pub(crate) async fn scan_in_chunks<Fut>(
    layout: &Layout,
    schema: &TableSchema,
    scan: &TableScan<'_>,
    budgets: &[u64],
    run: impl Fn(Read) -> Fut,
) -> Result<Fetched<StoredRecord>>
where
    Fut: Future<Output = Result<Fetched<StoredRecord>>>,
{
    let read = |after: Option<&RecordKey>, fetch, budget| {
        layout.scan_read(&TableScan {
            after,
            fetch,
            budget,
            ..*scan
        })
    };
    let position = |cut: &Document| schema.key_of(cut);
    read_in_chunks(
        scan.after.cloned(),
        scan.fetch,
        budgets,
        read,
        run,
        position,
    )
    .await
}

/// Reads a page of up to `fetch` records after `start`: a chunk for each of `budgets`, each
/// reading at most that many records and continuing after the last record the one before it
/// read (its cut, whose place in the read's order `position` gives), then what is left of the
/// page in one unbounded read. `read` makes the statement of a chunk from where it starts,
/// how many records it returns at most and its bound; `run` runs it.
async fn read_in_chunks<P, Fut>(
    start: Option<P>,
    fetch: usize,
    budgets: &[u64],
    read: impl Fn(Option<&P>, usize, Option<u64>) -> Result<Read>,
    run: impl Fn(Read) -> Fut,
    position: impl Fn(&Document) -> Result<P>,
) -> Result<Fetched<StoredRecord>>
where
    Fut: Future<Output = Result<Fetched<StoredRecord>>>,
{
    let mut found = Fetched::unfiltered(Vec::new());
    let mut after = start;
    for &budget in budgets {
        let chunk = run(read(
            after.as_ref(),
            fetch - found.records.len(),
            Some(budget),
        )?)
        .await?;
        let cut = chunk.cut.as_ref().map(&position).transpose()?;
        found = found.followed_by(chunk);
        match cut {
            Some(cut) => after = Some(cut),
            None => return Ok(found),
        }
    }
    let rest = run(read(after.as_ref(), fetch - found.records.len(), None)?).await?;
    Ok(found.followed_by(rest))
}
