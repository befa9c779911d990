//! The tables store: records, versions, unique and query indexes, pages, documents and
//! schemas, the same on every backend.
//!
//! The cases are split by topic, one module each: records, concurrency, unique,
//! ordering, paging, indexes, limits and schemas; they are all re-exported here, so a
//! case is `tables::<case>` whichever topic holds it. This module keeps what several topics
//! share: the tables they write (`things`, `series`, `words`, `products`) and small helpers.
//!
//! Index queries right after a write go through `settled`, which waits out a backend whose
//! index reads are eventual ([`Consistency::Eventual`]): a case that assumed read-after-write
//! there would fail on the memory backend with index lag, not only on DynamoDB.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use storekit_core::table::{
    Consistency, Document, KeyDef, Query, QueryPage, Record, RecordKey, Scan, TableSchema,
    TableStore,
};

use crate::Fixture;

mod concurrency;
mod indexes;
mod limits;
mod ordering;
mod paging;
mod records;
mod schemas;
mod unique;

pub use self::concurrency::*;
pub use self::indexes::*;
pub use self::limits::*;
pub use self::ordering::*;
pub use self::paging::*;
pub use self::records::*;
pub use self::schemas::*;
pub use self::unique::*;

/// A JSON object literal as a document.
pub(crate) fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// `things`: a text id, a query index on (group, rank), a sparse index on name alone, a
/// unique sku and a unique (a, b) pair.
fn things() -> TableSchema {
    TableSchema::builder("things", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .index("by-name", KeyDef::text("name"), None)
        .unique("sku", [KeyDef::text("sku")])
        .unique("pair", [KeyDef::text("a"), KeyDef::int("b")])
        .build()
        .expect("valid schema")
}

/// The fixture's tables store, with `schema`'s table ensured.
pub(crate) async fn ensure<'a>(f: &'a Fixture, schema: &TableSchema) -> &'a dyn TableStore {
    let store = f.tables().as_ref();
    store.ensure_table(schema).await.expect("ensure_table");
    store
}

/// Runs an index query until `done` accepts its page (at once where index reads are
/// read-after-write; within 10 s where they are eventual).
pub(crate) async fn settled(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: &Query,
    done: impl Fn(&QueryPage) -> bool,
) -> QueryPage {
    let patient = store.index_consistency() == Consistency::Eventual;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = store.query(schema, query).await.expect("query");
        if done(&page) || !patient || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn store(f: &Fixture) -> Arc<dyn TableStore> {
    f.tables().clone()
}

/// The record at `key`, if there is one.
pub(crate) async fn get(
    store: &dyn TableStore,
    schema: &TableSchema,
    key: &RecordKey,
) -> Option<Record> {
    store.get(schema, key).await.expect("get")
}

/// Inserts the JSON object `value`, which must be new.
pub(crate) async fn insert(store: &dyn TableStore, schema: &TableSchema, value: Value) -> Record {
    store.insert(schema, doc(value)).await.expect("insert")
}

/// `series`: partition `p` (text), sort `n` (integer).
fn series() -> TableSchema {
    TableSchema::builder("series", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .build()
        .expect("valid schema")
}

/// `words`: partition `p` (text), sort `w` (text).
fn words() -> TableSchema {
    TableSchema::builder("words", KeyDef::text("p"))
        .sort_key(KeyDef::text("w"))
        .build()
        .expect("valid schema")
}

/// The catalogue's table: a UUID-like id and the `product-name-index` on (name, updated_at).
fn products() -> TableSchema {
    TableSchema::builder("products", KeyDef::text("id"))
        .index(
            "product-name-index",
            KeyDef::text("name"),
            Some(KeyDef::float("updated_at")),
        )
        .build()
        .expect("valid schema")
}

/// The sort keys of a page of `series` or `words`, as JSON.
fn sorts(records: &[Record], field: &str) -> Vec<Value> {
    records.iter().map(|r| r.document[field].clone()).collect()
}

/// A scan of `limit` records a page, continuing from `cursor` if there is one.
pub(crate) fn scan_page(limit: usize, cursor: Option<&str>) -> Scan {
    let scan = Scan::new().limit(limit);
    match cursor {
        Some(cursor) => scan.after(cursor),
        None => scan,
    }
}
