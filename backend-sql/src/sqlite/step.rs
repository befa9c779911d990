//! Running statements to completion.
//!
//! SQLite calls the WAL hook, which is what asks for a checkpoint (see `checkpoint`), when a
//! statement steps to `SQLITE_DONE`. A statement reset earlier (as rusqlite's `query_row` and
//! `exists` do after the first row) still commits, but skips the hook, and a store whose writes
//! all end that way grows its WAL without bound, slowing every read. So every statement the
//! store runs goes through here. A read-only statement commits nothing, so it stops at the row
//! it wants: stepping a unique lookup on to its end costs a second walk of the index, a third
//! of what the lookup costs.

use rusqlite::{CachedStatement, Params, Row};

/// The first row of `stmt`'s result mapped by `f`, after stepping the statement to its end if
/// it writes.
pub(super) fn first_row<T>(
    stmt: &mut CachedStatement<'_>,
    params: impl Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let writes = !stmt.readonly();
    let mut rows = stmt.query(params)?;
    let first = match rows.next()? {
        Some(row) => Some(f(row)?),
        None => None,
    };
    if writes {
        while rows.next()?.is_some() {}
    }
    Ok(first)
}

/// True if `stmt` returns any row, after stepping it to its end.
pub(super) fn any_row(
    stmt: &mut CachedStatement<'_>,
    params: impl Params,
) -> rusqlite::Result<bool> {
    first_row(stmt, params, |_| Ok(())).map(|row| row.is_some())
}
