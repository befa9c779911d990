//! storekit's own SQL functions on every SQLite connection.
//!
//! `storekit_match(document, spec)` answers a condition of the expression language with the
//! memory backend's evaluator, so SQLite agrees with the reference by construction (see
//! `table_layout::filter` for why not SQLite's JSON functions). The spec, the same for every
//! row of a statement, is parsed once per statement.

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use storekit_core::table::{Condition, Document};

use super::error::sqlite_error;

#[derive(serde::Deserialize)]
struct Spec {
    c: Condition,
    b: Vec<String>,
}

pub(super) fn register(conn: &Connection) -> storekit_core::Result<()> {
    // `storekit_segment(partition_key, total)`: which of `total` scan segments a record is in
    // (`Scan::segment`), from a stable hash of its stored key.
    conn.create_scalar_function(
        "storekit_segment",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            use rusqlite::types::ValueRef;
            let total: i64 = ctx.get(1)?;
            let text;
            let bytes: &[u8] = match ctx.get_raw(0) {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
                ValueRef::Integer(int) => {
                    text = int.to_string();
                    text.as_bytes()
                }
                ValueRef::Real(float) => {
                    text = float.to_string();
                    text.as_bytes()
                }
                ValueRef::Null => b"",
            };
            let total = u64::try_from(total.max(1)).unwrap_or(1);
            Ok(i64::try_from(storekit_core::table::segment_hash(bytes) % total).unwrap_or(0))
        },
    )
    .map_err(sqlite_error)?;
    conn.create_scalar_function(
        "storekit_match",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let spec = ctx.get_or_create_aux(1, |raw| {
                serde_json::from_slice::<Spec>(raw.as_bytes()?)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })?;
            let document: Document = serde_json::from_slice(ctx.get_raw(0).as_bytes()?)
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
            let bytes: Vec<&str> = spec.b.iter().map(String::as_str).collect();
            Ok(spec.c.matches(&document, &bytes))
        },
    )
    .map_err(sqlite_error)
}
