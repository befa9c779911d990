//! Tables of records with query indexes and unique indexes: storekit's third store.
//!
//! A table is declared in code ([`TableSchema`]): a name, a partition key and optional sort
//! key, up to 20 query indexes and up to 20 unique indexes. Records are JSON documents
//! ([`Document`]); [`Table`] reads and writes them as your own serde types. Every backend keeps
//! the same contract, which the conformance suite's `tables` cases check:
//!
//! | | memory | SQLite | PostgreSQL | DynamoDB |
//! |---|---|---|---|---|
//! | get, get_many, contains, scan, count, table queries | read-after-write | read-after-write | read-after-write | read-after-write (consistent reads) |
//! | the same asked [`Consistency::Eventual`] ([`ReadOptions`], [`Query::consistency`], [`Scan::consistency`]) | read-after-write (or lagged, if asked) | read-after-write | read-after-write | **eventual**, half the read units |
//! | query on a query index | read-after-write (or lagged, if asked) | read-after-write | read-after-write | **eventual** (a GSI); [`Query::verified`] drops stale hits |
//! | get_by_unique | read-after-write | read-after-write | read-after-write | read-after-write |
//! | uniqueness | one lock | unique index | unique index | marker items in the record's transaction |
//!
//! On DynamoDB, the calls cost the fewest requests the database allows (the backend's tests
//! count them): `insert` 1 `PutItem`, or 1 `TransactWriteItems` with unique indexes; `get` and
//! `contains` 1 consistent `GetItem`; a page of `query` under 1 MB 1 `Query`; `get_many` of n
//! keys ⌈n/100⌉ `BatchGetItem`, unprocessed keys retried.
//!
//! Queries and scans take a filter ([`Query::filter`], [`Scan::filter`]): a [`Condition`] of the
//! expression language in [`expr`], on any document path, answered by every backend as the
//! memory backend's evaluator answers it (DynamoDB's rules), with full pages and exact cursors.
//! Every page says how many records it read to fill itself ([`QueryPage::read`]), and a read
//! budget ([`Query::read_budget`], [`Scan::read_budget`]) bounds what a selective filter may
//! cost: the page then ends early, possibly short, with a cursor that continues exactly.
//!
//! ```
//! # async fn run() -> storekit_core::Result<()> {
//! use serde_json::json;
//! use storekit_core::MemoryStore;
//! use storekit_core::table::{Condition, KeyDef, Query, TableSchema, TableStore};
//!
//! let store = MemoryStore::new();
//! let orders = TableSchema::builder("orders", KeyDef::text("customer"))
//!     .sort_key(KeyDef::int("n"))
//!     .build()?;
//! store.ensure_table(&orders).await?;
//! for n in 0..100 {
//!     let order = json!({"customer": "ann", "n": n, "open": n % 25 == 0});
//!     store.put(&orders, order.as_object().cloned().unwrap_or_default()).await?;
//! }
//! let open = Query::table("ann").filter(Condition::eq("open", true)).limit(2);
//! let page = store.query(&orders, &open).await?;
//! assert_eq!(page.items.len(), 2); // orders 0 and 25: full
//! assert_eq!(page.read, 26); // read from the start through order 25
//! // At most 10 records read: orders 0 to 9, of which one is open; the cursor goes on at 10.
//! let cheap = store.query(&orders, &open.read_budget(10)).await?;
//! assert_eq!((cheap.items.len(), cheap.read), (1, 10));
//! assert!(cheap.next.is_some());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! Reads can be projected ([`Query::select`], [`TableStore::get_selected`],
//! [`Table::query_as`]): only the selected document paths, plus the table's key fields, by
//! DynamoDB's `ProjectionExpression` rule on every backend ([`projection`]).
//!
//! Records can expire ([`TableSchemaBuilder::ttl`]): an expired record is never returned by
//! any read, counted, or held against a write of its key or unique values, on every backend,
//! before the database deletes it (DynamoDB's native TTL, enabled by `ensure_table`). Several
//! records are written or deleted at once with [`TableStore::put_many`] and
//! [`TableStore::delete_many`]: one transaction on SQL and memory, `BatchWriteItem` of 25 on
//! DynamoDB (not atomic past one call).
//!
//! ```
//! # async fn run() -> storekit_core::Result<()> {
//! use std::sync::Arc;
//! use serde_json::json;
//! use storekit_core::MemoryStore;
//! use storekit_core::table::{KeyDef, RecordKey, TableSchema, TableStore};
//!
//! let store = MemoryStore::new();
//! let sessions = TableSchema::builder("sessions", KeyDef::text("id"))
//!     .ttl("expires_at")
//!     .build()?;
//! store.ensure_table(&sessions).await?;
//! let doc = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
//! store
//!     .put_many(&sessions, vec![
//!         doc(json!({"id": "old", "expires_at": 1})), // 1970: expired
//!         doc(json!({"id": "new", "expires_at": 4_102_444_800_u64})), // 2100
//!     ])
//!     .await?;
//! assert_eq!(store.get(&sessions, &RecordKey::new("old")).await?, None);
//! assert_eq!(store.count(&sessions).await?, 1);
//! store.delete_many(&sessions, &[RecordKey::new("new")]).await?;
//! assert_eq!(store.count(&sessions).await?, 0);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! Writes take a condition too ([`TableStore::put_if`], [`TableStore::replace_if`],
//! [`TableStore::delete_if`], and the same on [`Table`]): a missing record is an empty
//! document, as on DynamoDB, and a failed condition is
//! [`Conflict`](crate::Error::Conflict) on `"condition"` with nothing written. Several writes
//! on any tables go together or not at all in a [`Transaction`] ([`transact`]).
//!
//! [`TableStore::index_consistency`] says which applies. Every write bumps the record's
//! version; a version conflict is the database's answer to the write, never a read made
//! before it.
//!
//! # The rules at the edges
//!
//! Written once here and checked before any backend sees a call, so that every backend gives
//! the same answer; the conformance suite's `edges` cases check each on every backend.
//!
//! - **Key types.** Text (UTF-8 byte order, 1 to [`MAX_KEY_BYTES`], no NUL), 64-bit integers,
//!   bytes (unsigned byte order, 1 to [`MAX_KEY_BYTES`]) and finite floats in DynamoDB's range,
//!   `-0.0` being `0` ([`KeyType`]). A float key is exact: a JSON integer in a float key field
//!   (a key or an index key) must be one an `f64` holds exactly, every integer up to 2^53 and
//!   larger ones such as 2^60; others (2^53 + 1, `i64::MAX`, a timestamp in nanoseconds) are
//!   [`Error::InvalidInput`](crate::Error::InvalidInput) naming the field, since the key read
//!   back would differ from the value stored and could never find its record again.
//! - **Versions** run from 1 to [`MAX_VERSION`] (`i64::MAX`, what SQL's `BIGINT` holds), on
//!   every backend. An import at a version outside is `InvalidInput { what: "version" }`. A
//!   record at the last version can be read and deleted, but any write that would count past
//!   it (`put`, `replace`, `update`) is `InvalidInput { what: "version" }` and writes nothing
//!   ([`next_version`] says why it is not a conflict); nothing ever wraps to 0, where an old
//!   version would match again. 0 is only the version of an item another client wrote into an
//!   adopted DynamoDB table.
//! - **Field names** in a document are 1 to [`MAX_FIELD_NAME_BYTES`] bytes at any depth
//!   (DynamoDB Local refuses longer ones after seconds of retries); see [`canonicalize`] for
//!   the other document rules.
//! - **Pages always move forward.** Each record of a page comes strictly after the one before
//!   it, the first after the cursor, in the query's order (a table query by key; an index
//!   query by the index's sort key, ties in the backend's own order), so [`query_stream`] and
//!   [`scan_stream`] always end. A backend that answers otherwise fails the page with
//!   [`Error::Backend`](crate::Error::Backend) instead of handing out a cursor that repeats it.
//! - **Cursors are bound to their query and tamper-evident.** A cursor is the position where a
//!   page ended (the last record's key, and its index sort key) with an HMAC-SHA256 tag over
//!   that position and the query (table, index, partition, condition, filter, order; or the
//!   table and filter, for a scan), in URL-safe base64. Any edit, a cursor of another query, and a position outside
//!   the query's partition or sort condition are `InvalidInput { what: "cursor" }` before any
//!   database sees them. The tag's key is random per process, so nobody outside the process
//!   can forge a cursor and there is no secret to manage; processes or replicas that continue
//!   each other's pages share one with [`set_cursor_key`].
//!
//! # Names and schema changes, the same on every backend
//!
//! - **Table names** are 3 to 40 of `a-z A-Z 0-9 _ - .` ([`NAME_LENGTH`]), none of storekit's
//!   own ([`RESERVED_TABLE_NAMES`]) nor starting with what a backend keeps for itself
//!   ([`RESERVED_TABLE_PREFIXES`]), in any case: checked when the schema is built. With the
//!   store's prefix, a name is at most [`MAX_PREFIXED_NAME`] bytes, checked when the table is
//!   ensured ([`check_prefixed_name`]).
//! - **Names that differ only in ASCII letter case are one name** ([`same_table_name`]): a
//!   store holds one of them, [`TableStore::ensure_table`] refuses the other with
//!   [`InvalidInput`](crate::Error::InvalidInput) (`"table name"`), and every other call
//!   through it answers as for a table that does not exist.
//! - **A table is never adopted unless it is one of the tables store's**: on SQL, an SQL table
//!   under the derived name that the catalog does not record (another store's `users`, say) is
//!   [`SchemaMismatch`](crate::Error::SchemaMismatch), and `drop_table` leaves it. On DynamoDB,
//!   a table made outside storekit is adopted when its keys and indexes are the schema's.
//! - **The live indexes are what the database holds**: an index dropped by hand is missing,
//!   and `ensure_table` builds it again and reports it in
//!   [`TableStatus::IndexesAdded`].
//! - **Indexes added over existing records** (a declared index the live table lacks): before
//!   anything is created, every record is read. A record that lacks one of the index's fields
//!   is left out of it (a sparse index, as for writes); one that holds `null` in it is left out
//!   and rewritten without the `null`, at its next version, as a write under the new schema
//!   would store it; one that holds a value the index cannot hold (another type, empty text)
//!   refuses the whole addition with [`SchemaMismatch`](crate::Error::SchemaMismatch) naming
//!   the index and the record, and nothing is created or changed. A unique index over a value
//!   held twice is [`AlreadyExists`](crate::Error::AlreadyExists) (`"unique value"`) and leaves
//!   nothing behind. Waiting for a new index to be usable (a DynamoDB GSI's backfill) is
//!   bounded; running out is [`Unavailable`](crate::Error::Unavailable) naming the index.
//!
//! ```
//! # async fn run() -> storekit_core::Result<()> {
//! use std::sync::Arc;
//! use serde::{Deserialize, Serialize};
//! use storekit_core::MemoryStore;
//! use storekit_core::table::{KeyDef, Query, Table, TableSchema};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Product { id: String, name: String, updated_at: f64 }
//!
//! let schema = TableSchema::builder("products", KeyDef::text("id"))
//!     .index("product-name-index", KeyDef::text("name"), Some(KeyDef::float("updated_at")))
//!     .build()?;
//! let products: Table<Product> = Table::new(Arc::new(MemoryStore::new()), schema);
//! products.ensure().await?;
//! products.insert(&Product { id: "p1".into(), name: "lamp".into(), updated_at: 1.5 }).await?;
//! let newest = products.query(Query::index("product-name-index", "lamp").descending()).await?;
//! assert_eq!(newest.items[0].record.id, "p1");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```

mod document;
pub mod expr;
mod layer;
pub mod patch;
pub mod projection;
mod query;
mod read;
pub mod record;
mod scan;
mod schema;
mod stored;
pub mod transact;
mod typed;
mod value;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use crate::validate::MAX_FIELD_NAME_BYTES;
pub use document::{
    Document, MAX_DOCUMENT_BYTES, RESERVED_FIELD_PREFIX, canonicalize, dynamodb_size,
};
pub use expr::{Comparison, Condition, Operand, Path};
pub use patch::{Patch, Patched, Returning};
pub use projection::{MAX_SELECTED_PATHS, Projection};
pub use query::{
    Consistency, DEFAULT_PAGE, Fetched, IndexQuery, MAX_PAGE, MAX_READ_BUDGET,
    MIN_CURSOR_KEY_BYTES, Order, Position, Query, QueryPage, SortCondition, set_cursor_key,
};
pub use read::ReadOptions;
pub use record::{KeyField, RecordType, TtlField};
pub use scan::{MAX_SEGMENTS, Scan, Segment, TableScan, segment_hash};
pub use schema::{
    Billing, DEFAULT_VERSION_ATTRIBUTE, IndexEntry, IndexProjection, IndexShape, KeyDef, KeyShape,
    MAX_INCLUDED_FIELDS, MAX_INDEXES, MAX_PREFIXED_NAME, MAX_TAGS, MAX_UNIQUE_COMPONENTS,
    MAX_UNIQUE_INDEXES, MissingIndexes, NAME_LENGTH, QueryIndex, RESERVED_TABLE_NAMES,
    RESERVED_TABLE_PREFIXES, Row, TableSchema, TableSchemaBuilder, TableShape, Throughput,
    UniqueIndex, UniqueShape, check_prefixed_name, same_table_name,
};
pub use stored::{Body, StoredRecord, distinct_keys, fields_of, in_key_order, parse_all};
pub use transact::{MAX_TRANSACTION_ACTIONS, Transaction};
pub use typed::{Table, Versioned};
pub use value::{KeyType, KeyValue, MAX_KEY_BYTES, RecordKey};

use crate::Result;

/// The last version a record can reach: versions run from 1 to `i64::MAX` on every backend
/// (SQL stores a `BIGINT`; DynamoDB and memory keep the same range so that a copy between
/// them never meets a version it cannot hold).
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// The version a write over a record at `current` gives it: `current + 1`.
///
/// A record at [`MAX_VERSION`] can be read and deleted, but no longer written:
/// [`Error::InvalidInput`](crate::Error::InvalidInput) (`"version"`), the same on every
/// backend, and nothing is written. It is not a [`Conflict`](crate::Error::Conflict), which
/// [`TableStore::update`] would retry: no retry can succeed, and the version must never wrap
/// to a value an old reader holds. Backends call it wherever a write counts one up.
pub fn next_version(current: u64) -> Result<u64> {
    match current.checked_add(1) {
        Some(next) if next <= MAX_VERSION => Ok(next),
        _ => Err(crate::Error::invalid(
            "version",
            format!(
                "the record is at version {current}, and versions end at {MAX_VERSION}: it \
                 can be deleted, not written"
            ),
        )),
    }
}

/// Checks a version a record is written at as given (an import): 1 to [`MAX_VERSION`].
pub(crate) fn check_version(version: u64) -> Result<()> {
    if !(1..=MAX_VERSION).contains(&version) {
        return Err(crate::Error::invalid(
            "version",
            format!("{version} is outside 1 to {MAX_VERSION}, the versions every backend holds"),
        ));
    }
    Ok(())
}

/// Checks a version a caller expects a record to be at: 0 (an item another client wrote
/// into an adopted DynamoDB table) to [`MAX_VERSION`]; above it no record can be.
pub(crate) fn check_expected_version(version: u64) -> Result<()> {
    if version > MAX_VERSION {
        return Err(crate::Error::invalid(
            "version",
            format!("{version} is above {MAX_VERSION}, the last version a record can have"),
        ));
    }
    Ok(())
}

/// One stored record: its key, its version and its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's key in its table.
    pub key: RecordKey,
    /// Starts at 1 and grows by one with every write through storekit, up to
    /// [`MAX_VERSION`]. An item written by another client into an adopted DynamoDB table has no
    /// version yet and reads as 0.
    pub version: u64,
    /// The document, as stored (canonical, with computed keys).
    pub document: Document,
}

/// How big a table is, as the database knows without reading it
/// ([`TableStore::table_size`]): what a full read (a `count`, a scan, a copy) will read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSize {
    /// About how many records it holds, expired ones included; `None` where the database
    /// cannot say without counting.
    pub records: Option<u64>,
    /// About how many bytes they take; `None` where the database does not say.
    pub bytes: Option<u64>,
    /// Whether the figures are exact and current (memory), rather than the database's
    /// periodic estimate (DynamoDB refreshes `ItemCount` and `TableSizeBytes` about every six
    /// hours).
    pub exact: bool,
}

/// What [`TableStore::ensure_table`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStatus {
    /// The table did not exist and was created.
    Created,
    /// The table existed and matched the schema.
    Unchanged,
    /// The table existed, and these newly declared indexes were added and filled from its
    /// records.
    IndexesAdded(Vec<String>),
    /// The table existed with query indexes the schema does not declare (another client's
    /// global secondary indexes on an adopted table, or ones an earlier schema declared):
    /// they are left alone and listed in `undeclared`; `added` lists the declared indexes
    /// that were added, as [`TableStatus::IndexesAdded`] does (empty when none were missing).
    ///
    /// On DynamoDB such an index is the database's own and stays listed by every
    /// `ensure_table`. On SQL and memory, storekit maintains indexes itself, and writes
    /// through a schema that leaves an index out cannot keep it: the store forgets it (its
    /// SQL index and columns stay, emptied), so it is listed once, and declaring it again
    /// rebuilds it from the records like any missing index.
    UndeclaredIndexes {
        /// The declared indexes added (and filled from the records).
        added: Vec<String>,
        /// The live query indexes the schema does not declare, left alone.
        undeclared: Vec<String>,
    },
}

impl TableStatus {
    /// The live query indexes the schema does not declare, left alone (see
    /// [`TableStatus::UndeclaredIndexes`]); empty for the other outcomes.
    #[must_use]
    pub fn undeclared_indexes(&self) -> &[String] {
        match self {
            Self::UndeclaredIndexes { undeclared, .. } => undeclared,
            _ => &[],
        }
    }

    /// The declared indexes this call added.
    #[must_use]
    pub fn added_indexes(&self) -> &[String] {
        match self {
            Self::IndexesAdded(added) | Self::UndeclaredIndexes { added, .. } => added,
            Self::Created | Self::Unchanged => &[],
        }
    }
}

/// A change to one record's document, for [`TableStore::update`]: it may run more than once
/// when a concurrent write wins the race.
pub type Change<'a> = &'a mut (dyn FnMut(Document) -> Result<Document> + Send);

/// Tables of records, on any backend, as `Arc<dyn TableStore>`.
///
/// Every call takes the table's [`TableSchema`]; the store keeps no state about tables
/// besides what the database holds. Most code uses the typed [`Table`] instead.
#[async_trait]
pub trait TableStore: std::fmt::Debug + Send + Sync + 'static {
    /// Creates the table with its indexes if it does not exist, and waits until it is usable.
    /// Safe to call concurrently and on every start-up. A table that exists and lacks an index
    /// the schema declares gets it, filled from its records (see the module docs for records
    /// that do not fit it); a table whose keys or declared indexes differ (their keys or
    /// [projection](IndexProjection)) is refused with
    /// [`Error::SchemaMismatch`](crate::Error::SchemaMismatch) listing the differences. Query
    /// indexes the schema does not declare are left alone and listed
    /// ([`TableStatus::UndeclaredIndexes`]), never a mismatch. A name that differs from an
    /// existing table's only in case is refused (see [`same_table_name`]).
    async fn ensure_table(&self, schema: &TableSchema) -> Result<TableStatus>;

    /// Drops the table and everything in it; `false` if it did not exist.
    async fn drop_table(&self, schema: &TableSchema) -> Result<bool>;

    /// How fresh queries on query indexes are on this backend.
    fn index_consistency(&self) -> Consistency;

    /// What a read that asks for [`Consistency::Eventual`] ([`ReadOptions::consistency`],
    /// [`Query::consistency`], [`Scan::consistency`]) gets on this backend:
    /// [`Consistency::Eventual`] on DynamoDB (it may be stale), and on a memory store that
    /// simulates index lag (its eventual reads lag as its indexes do, so tests catch the
    /// assumption); [`Consistency::ReadAfterWrite`] on SQLite, PostgreSQL and memory, which
    /// have no replica to read from.
    fn eventual_reads(&self) -> Consistency;

    /// Writes a new record at version 1; [`AlreadyExists`](crate::Error::AlreadyExists) if its
    /// key (`"record"`) or one of its unique values (`"unique value"`) is taken.
    async fn insert(&self, schema: &TableSchema, document: Document) -> Result<Record>;

    /// Writes the record whether or not it exists (version 1, or one more than before). Over
    /// a record at [`MAX_VERSION`]: [`InvalidInput`](crate::Error::InvalidInput) (`"version"`),
    /// nothing written.
    async fn put(&self, schema: &TableSchema, document: Document) -> Result<Record>;

    /// Overwrites the record if it is still at `version`; otherwise
    /// [`Conflict`](crate::Error::Conflict), or [`NotFound`](crate::Error::NotFound) if it is
    /// gone. A `version` of [`MAX_VERSION`] or more is
    /// [`InvalidInput`](crate::Error::InvalidInput) (`"version"`) before anything is sent.
    async fn replace(
        &self,
        schema: &TableSchema,
        document: Document,
        version: u64,
    ) -> Result<Record>;

    /// Reads the record, changes it with `change`, and writes it at the version read; when
    /// another write came first, reads and changes again. The change must keep the key. A
    /// record at [`MAX_VERSION`] is [`InvalidInput`](crate::Error::InvalidInput) (`"version"`),
    /// without calling `change`.
    async fn update(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        change: Change<'_>,
    ) -> Result<Record>;

    /// Deletes the record; `false` if it did not exist. With a `version`, only if the record is
    /// at it ([`Conflict`](crate::Error::Conflict) otherwise, [`NotFound`](crate::Error::NotFound)
    /// if it is gone; above [`MAX_VERSION`], [`InvalidInput`](crate::Error::InvalidInput)).
    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        version: Option<u64>,
    ) -> Result<bool>;

    /// Reads one record.
    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>>;

    /// Reads records by key, in the order of `keys` (at most 1,000).
    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>>;

    /// [`TableStore::get`] with [`ReadOptions`]: eventually consistent if asked (one `GetItem`
    /// with `ConsistentRead=false` on DynamoDB, half the read units), projected if asked (as
    /// [`TableStore::get_selected`]). `ReadOptions::new()` reads as `get` does.
    async fn get_with(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        options: &ReadOptions,
    ) -> Result<Option<Record>>;

    /// [`TableStore::get_many`] with [`ReadOptions`] (`BatchGetItem` with
    /// `ConsistentRead=false` on DynamoDB when eventual).
    async fn get_many_with(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        options: &ReadOptions,
    ) -> Result<Vec<Option<Record>>>;

    /// Reads only the `select`ed paths of one record, plus the table's key fields, with its
    /// version: a partial document ([`projection`] has the rule, the same on every backend).
    /// A path the record lacks is left out; a selection that overlaps, conflicts or is too
    /// long is [`InvalidInput`](crate::Error::InvalidInput) (`"projection"`). One consistent
    /// `GetItem` with a `ProjectionExpression` on DynamoDB; SQL and memory read the record
    /// and project it in storekit.
    ///
    /// ```
    /// # async fn run() -> storekit_core::Result<()> {
    /// use serde_json::json;
    /// use storekit_core::MemoryStore;
    /// use storekit_core::table::{KeyDef, Projection, RecordKey, TableSchema, TableStore};
    ///
    /// let store = MemoryStore::new();
    /// let orders = TableSchema::builder("orders", KeyDef::text("id")).build()?;
    /// store.ensure_table(&orders).await?;
    /// let order = json!({"id": "o1", "status": "open", "lines": [{"sku": "a"}, {"sku": "b"}]});
    /// store.put(&orders, order.as_object().cloned().unwrap_or_default()).await?;
    /// let select = Projection::new(["status", "lines[1].sku"]);
    /// let found = store.get_selected(&orders, &RecordKey::new("o1"), &select).await?;
    /// let found = found.map(|r| serde_json::Value::Object(r.document));
    /// assert_eq!(found, Some(json!({"id": "o1", "status": "open", "lines": [{"sku": "b"}]})));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    async fn get_selected(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        select: &Projection,
    ) -> Result<Option<Record>>;

    /// [`TableStore::get_many`], each record read as [`TableStore::get_selected`] reads it:
    /// `BatchGetItem` with a `ProjectionExpression` on DynamoDB.
    async fn get_many_selected(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        select: &Projection,
    ) -> Result<Vec<Option<Record>>>;

    /// [`TableStore::get`] for a typed read: the record with its document as the backend
    /// holds it (JSON text on SQL), which [`Table::get`] reads straight into its type
    /// ([`StoredRecord::read`]) without building a [`Document`] first.
    async fn get_stored(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<StoredRecord>>;

    /// [`TableStore::get_many`] for a typed read, as [`TableStore::get_stored`].
    async fn get_many_stored(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<StoredRecord>>>;

    /// Whether the record exists.
    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool>;

    /// The record holding `values` in the unique index `index`; read-after-write everywhere.
    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: &str,
        values: &[KeyValue],
    ) -> Result<Option<Record>>;

    /// One page of a query on the table or one of its query indexes.
    async fn query(&self, schema: &TableSchema, query: &Query) -> Result<QueryPage>;

    /// [`TableStore::query`] for a typed read: each record with its document as the backend
    /// holds it (JSON text on SQL), which [`Table::query`] reads straight into its type, as
    /// [`TableStore::get_stored`].
    async fn query_stored(
        &self,
        schema: &TableSchema,
        query: &Query,
    ) -> Result<QueryPage<StoredRecord>>;

    /// One page of a scan of the whole table ([`Scan`]: limit, cursor, filter, read budget),
    /// in an order of the backend's choosing.
    async fn scan(&self, schema: &TableSchema, scan: &Scan) -> Result<QueryPage>;

    /// [`TableStore::scan`] for a typed read, as [`TableStore::query_stored`].
    async fn scan_stored(
        &self,
        schema: &TableSchema,
        scan: &Scan,
    ) -> Result<QueryPage<StoredRecord>>;

    /// How many records the table holds, exactly, consistently.
    ///
    /// What it costs: it reads the whole table. On DynamoDB it is a consistent `Scan` with
    /// `Select=COUNT` over every 1 MB page: about (table size / 1 MB) requests and (table
    /// size / 4 KB) read units, as much as reading every record, however small the answer
    /// (a 10 GB table: about 10,000 requests and 2.6 million read units). On a table with a
    /// TTL every backend reads the records, to leave the expired ones out. SQL runs one
    /// `SELECT COUNT(*)` (a full scan of the table or its primary key index); memory counts
    /// in memory. Prefer [`TableStore::count_query`] for one partition or index range, which
    /// reads only that range.
    async fn count(&self, schema: &TableSchema) -> Result<u64>;

    /// How big the table is, from what the database keeps about it, without reading it: on
    /// DynamoDB one `DescribeTable` (`ItemCount` and `TableSizeBytes`, refreshed about every
    /// six hours); on memory the exact record count; on SQL nothing (a count is one
    /// statement there, and costs no read units). What `storekit stats` and `copy` print
    /// before they read a table.
    async fn table_size(&self, schema: &TableSchema) -> Result<TableSize>;

    /// How many records a query matches: the records of its partition (of the table or of
    /// a query index) meeting its sort condition and filter, live ones only, all pages
    /// together. Its limit and selection do not apply; a cursor, a read budget or
    /// [`Query::verified`] is [`Error::InvalidInput`](crate::Error::InvalidInput) (a count has no
    /// pages, reads its whole range, and returns no hits to verify).
    ///
    /// It reads only the range: DynamoDB `Query` requests with `Select=COUNT` over each 1 MB
    /// page of the range (consistent on the table unless the query asks
    /// [`Consistency::Eventual`]; eventual on an index, a GSI), SQL one `SELECT COUNT(*)`
    /// over the range of the table's key or the index's B-tree, memory a count in memory.
    ///
    /// ```
    /// # async fn run() -> storekit_core::Result<()> {
    /// use serde_json::json;
    /// use storekit_core::MemoryStore;
    /// use storekit_core::table::{
    ///     Condition, KeyDef, KeyValue, Query, SortCondition, TableSchema, TableStore,
    /// };
    ///
    /// let store = MemoryStore::new();
    /// let orders = TableSchema::builder("orders", KeyDef::text("customer"))
    ///     .sort_key(KeyDef::int("n"))
    ///     .build()?;
    /// store.ensure_table(&orders).await?;
    /// for n in 0..10 {
    ///     let order = json!({"customer": "ann", "n": n, "open": n < 3});
    ///     store.put(&orders, order.as_object().cloned().unwrap_or_default()).await?;
    /// }
    /// assert_eq!(store.count_query(&orders, &Query::table("ann")).await?, 10);
    /// let late = Query::table("ann").sort(SortCondition::Ge(KeyValue::Int(5)));
    /// assert_eq!(store.count_query(&orders, &late).await?, 5);
    /// let open = Query::table("ann").filter(Condition::eq("open", true));
    /// assert_eq!(store.count_query(&orders, &open).await?, 3);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    async fn count_query(&self, schema: &TableSchema, query: &Query) -> Result<u64>;

    /// Changes parts of the record at `key` ([`Patch`]: set, remove, add, append,
    /// set-if-absent) in one request, if `condition` holds on it, bumping its version; returns
    /// what `returning` asks for. [`NotFound`](crate::Error::NotFound) if there is no such
    /// record, [`Conflict`](crate::Error::Conflict) (`"condition"`) if the condition does not
    /// hold, [`InvalidInput`](crate::Error::InvalidInput) (`"patch"`) if the patch cannot be
    /// made on this record (see [`patch`]); in every failure nothing changes.
    ///
    /// On DynamoDB it is one `UpdateItem` (a read and a `TransactWriteItems` when it changes a
    /// unique-indexed field or the table has computed keys); on SQL one transaction holding the
    /// row; on memory one lock. Concurrent patches never lose an update.
    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<Patched>;

    // Batches (issue 21, item 6).

    /// Writes up to [`MAX_BATCH`] records whether or not they exist, each at version 1 or one
    /// more than before, as [`TableStore::put`] would; returns them in the order given. Two
    /// documents with one key are [`InvalidInput`](crate::Error::InvalidInput) (`"documents"`),
    /// as are more than [`MAX_BATCH`].
    ///
    /// Atomicity differs (the README's "What differs between backends"): on SQL and memory
    /// the batch is one transaction, all or nothing. On DynamoDB it is one `BatchGetItem` per
    /// 100 records (their versions) and one `BatchWriteItem` per 25, unprocessed items resent:
    /// a failure can leave some records written, and a write to one of the records between
    /// the read and the write is overwritten. A table with unique indexes cannot go through
    /// `BatchWriteItem` (its markers need transactions): there each record is one
    /// [`TableStore::put`], in order, and a failure stops the batch there.
    async fn put_many(&self, schema: &TableSchema, documents: Vec<Document>)
    -> Result<Vec<Record>>;

    /// Deletes up to [`MAX_BATCH`] records by key; keys without a record are skipped. The same
    /// atomicity as [`TableStore::put_many`]: one transaction on SQL and memory, `BatchWriteItem`
    /// of 25 on DynamoDB (one delete per record on a table with unique indexes).
    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()>;

    // Conditional writes (issue 21, item 5).

    /// [`put`](TableStore::put), only if `condition` holds on the record as stored; when there
    /// is no record, the condition is evaluated on an empty document, as DynamoDB does
    /// (`not_exists` holds, a comparison fails). A failed condition is
    /// [`Conflict`](crate::Error::Conflict) with `what` `"condition"` (`expected` and
    /// `actual` the stored version, 0 when there is no record) and nothing is written. The
    /// database decides it in the write: one conditional `PutItem` (or `TransactWriteItems`)
    /// on DynamoDB, one transaction holding the row on SQL, one lock on memory.
    async fn put_if(
        &self,
        schema: &TableSchema,
        document: Document,
        condition: &Condition,
    ) -> Result<Record>;

    /// Overwrites the record if it exists ([`NotFound`](crate::Error::NotFound) otherwise) and
    /// `condition` holds on it ([`Conflict`](crate::Error::Conflict), `"condition"`,
    /// otherwise); nothing is written when it fails. See [`TableStore::put_if`].
    async fn replace_if(
        &self,
        schema: &TableSchema,
        document: Document,
        condition: &Condition,
    ) -> Result<Record>;

    /// Deletes the record if `condition` holds on it; `false` if there was no record and the
    /// condition holds on an empty document (`not_exists`), and
    /// [`Conflict`](crate::Error::Conflict) (`"condition"`) when it does not hold, with
    /// nothing deleted. One conditional `DeleteItem` on DynamoDB for a table without unique
    /// indexes.
    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool>;
    // Transactions (issue 21, item 7).

    /// Applies every action of `transaction` or none ([`transact`]): one `TransactWriteItems`
    /// on DynamoDB with an idempotency token, one database transaction on SQL, one lock on
    /// memory. A failed action is [`TransactionFailed`](crate::Error::TransactionFailed) with
    /// its index, and nothing is written.
    async fn transact(&self, transaction: &Transaction) -> Result<()>;
}

/// Most records one [`TableStore::put_many`] or [`TableStore::delete_many`] takes.
pub const MAX_BATCH: usize = 1000;

/// The trait object users pass around: `Arc<DynTableStore>`, as with
/// [`DynKvStore`](crate::DynKvStore).
pub type DynTableStore = dyn TableStore;

/// Every record a query matches, page after page, fetched as the stream is read.
pub fn query_stream(
    store: Arc<dyn TableStore>,
    schema: TableSchema,
    query: Query,
) -> BoxStream<'static, Result<Record>> {
    pages(
        move |query: Query| {
            let (store, schema) = (store.clone(), schema.clone());
            async move {
                let page = store.query(&schema, &query).await?;
                let next = query.continued(page.next);
                Ok((page.items, next))
            }
        },
        query,
    )
}

/// Every record a scan returns (every record of the table, for [`Scan::new`]), page after
/// page, fetched as the stream is read. A read budget bounds each page, not the stream.
pub fn scan_stream(
    store: Arc<dyn TableStore>,
    schema: TableSchema,
    scan: Scan,
) -> BoxStream<'static, Result<Record>> {
    pages(
        move |scan: Scan| {
            let (store, schema) = (store.clone(), schema.clone());
            async move {
                let page = store.scan(&schema, &scan).await?;
                let next = scan.continued(page.next);
                Ok((page.items, next))
            }
        },
        scan,
    )
}

/// Every record a scan returns, reading the `segments` segments of the table
/// ([`Scan::segment`]) at once, each page after page, the records of each segment as they
/// come: DynamoDB's parallel scan, for a full read (a copy, an export) that one sequential
/// scan would make slow. Each record comes once; the order is no order. The scan's own
/// segment, if set, is replaced. 1 segment is [`scan_stream`]; more than [`MAX_SEGMENTS`] is
/// [`Error::InvalidInput`](crate::Error::InvalidInput) (`"segment"`), as the first item.
///
/// ```
/// # async fn run() -> storekit_core::Result<()> {
/// use std::sync::Arc;
/// use futures::TryStreamExt as _;
/// use serde_json::json;
/// use storekit_core::MemoryStore;
/// use storekit_core::table::{KeyDef, Scan, TableSchema, TableStore, scan_stream_parallel};
///
/// let store = Arc::new(MemoryStore::new());
/// let events = TableSchema::builder("events", KeyDef::int("id")).build()?;
/// store.ensure_table(&events).await?;
/// for id in 0..30 {
///     store.put(&events, json!({"id": id}).as_object().cloned().unwrap_or_default()).await?;
/// }
/// let all: Vec<_> = scan_stream_parallel(store, events, Scan::new().limit(7), 4)
///     .try_collect()
///     .await?;
/// assert_eq!(all.len(), 30);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
pub fn scan_stream_parallel(
    store: Arc<dyn TableStore>,
    schema: TableSchema,
    scan: Scan,
    segments: u32,
) -> BoxStream<'static, Result<Record>> {
    use futures::StreamExt as _;
    if segments == 1 {
        let whole = Scan {
            segment: None,
            ..scan
        };
        return scan_stream(store, schema, whole);
    }
    if segments == 0 || segments > MAX_SEGMENTS {
        let refused = crate::Error::invalid(
            "segment",
            format!("{segments} segments: 1 to {MAX_SEGMENTS}"),
        );
        return futures::stream::once(async move { Err(refused) }).boxed();
    }
    futures::stream::select_all((0..segments).map(|index| {
        scan_stream(
            store.clone(),
            schema.clone(),
            scan.clone().segment(index, segments),
        )
    }))
    .boxed()
}

/// Flattens pages into a stream: `fetch(state)` gives a page and the state of the next one,
/// if any.
fn pages<S, F, Fut>(fetch: F, first: S) -> BoxStream<'static, Result<Record>>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(Vec<Record>, Option<S>)>> + Send + 'static,
{
    use futures::StreamExt as _;
    let fetch = Arc::new(fetch);
    futures::stream::try_unfold(Some(first), move |state| {
        let fetch = fetch.clone();
        async move {
            match state {
                None => Ok(None),
                Some(state) => fetch(state).await.map(|(items, next)| Some((items, next))),
            }
        }
    })
    .map(|page| match page {
        Ok(items) => futures::stream::iter(items.into_iter().map(Ok)).boxed(),
        Err(e) => futures::stream::once(async { Err(e) }).boxed(),
    })
    .flatten()
    .boxed()
}
