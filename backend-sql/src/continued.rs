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
use storekit_core::table::{Document, Fetched, StoredRecord};

use crate::table_layout::Read;

/// Reads a page of up to `fetch` records after `start`: a chunk for each of `budgets`, each
/// reading at most that many records and continuing after the last record the one before it
/// read (its cut, whose place in the read's order `position` gives), then what is left of the
/// page in one unbounded read. `read` makes the statement of a chunk from where it starts,
/// how many records it returns at most and its bound; `run` runs it.
pub(crate) async fn read_in_chunks<P, Fut>(
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
