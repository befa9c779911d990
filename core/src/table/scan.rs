//! Scans of a whole table: their options, as a caller gives them and as a backend runs them.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::expr::Condition;
use super::query::{self, Consistency, DEFAULT_PAGE};
use super::schema::TableSchema;
use super::value::RecordKey;
use crate::{Error, Result};

/// Most segments a scan can be split into: DynamoDB's limit on `TotalSegments`.
pub const MAX_SEGMENTS: u32 = 1_000_000;

/// One of the `total` disjoint parts of a table that a parallel scan reads
/// ([`Scan::segment`]): every record is in exactly one segment of a split, and which one
/// depends on its partition key alone, so a record stays in its segment while it lives.
///
/// Which records a segment holds is the backend's own choice, as DynamoDB's `Segment` is: a
/// hash of the partition key on DynamoDB (the database's own), memory and SQLite
/// ([`Segment::holds`]; SQLite hashes the stored key's own bytes), PostgreSQL's
/// `hashtextextended` of the key's text. Segments of one
/// split cover the table together, whatever the backend, which is what the conformance
/// suite checks; the records of one segment on two backends may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// Which segment, from 0 to `total - 1`.
    pub index: u32,
    /// How many segments the table is split into, 1 to [`MAX_SEGMENTS`].
    pub total: u32,
}

impl Segment {
    /// Whether the record with partition key `key.partition` is in this segment, by storekit's
    /// own hash (the first 8 bytes of the SHA-256 of the key value's JSON): what memory and
    /// SQLite use.
    #[must_use]
    pub fn holds(&self, key: &RecordKey) -> bool {
        segment_hash(key.partition.to_json().to_string().as_bytes()) % u64::from(self.total.max(1))
            == u64::from(self.index)
    }

    fn check(&self) -> Result<()> {
        if !(1..=MAX_SEGMENTS).contains(&self.total) || self.index >= self.total {
            return Err(Error::invalid(
                "segment",
                format!(
                    "segment {} of {}: the total must be 1 to {MAX_SEGMENTS}, and the segment \
                     below it",
                    self.index, self.total
                ),
            ));
        }
        Ok(())
    }
}

/// The hash [`Segment::holds`] splits a table by: the first 8 bytes of the SHA-256 of
/// `bytes` (a partition key's JSON text there), stable across releases and platforms.
#[must_use]
pub fn segment_hash(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// One scan: every record of the table, in an order of the backend's choosing (the table's
/// key on memory and SQL, DynamoDB's own on DynamoDB), optionally filtered; what
/// [`TableStore::scan`](super::TableStore::scan) reads a page of.
///
/// Scans keep the promises of queries ([`Query`](super::Query)): [`Scan::limit`] counts the
/// records returned and pages stay full (the store reads on until it has them or the table
/// ends), a page says how many records it read ([`QueryPage::read`](super::QueryPage::read)),
/// an optional read budget bounds the cost of a selective filter, and cursors are opaque and
/// exact, bound to the table and the filter: a cursor of a scan with another filter (or
/// none) is [`Error::InvalidInput`](crate::Error::InvalidInput) (`"cursor"`).
///
/// Unlike a query's, a scan's filter may test the table's key fields: a scan has no key
/// condition to decide them (DynamoDB's `Scan` filters on them too), and every backend
/// answers such a filter the same way.
///
/// ```
/// # async fn run() -> storekit_core::Result<()> {
/// use serde_json::json;
/// use storekit_core::MemoryStore;
/// use storekit_core::table::{Condition, KeyDef, Scan, TableSchema, TableStore};
///
/// let store = MemoryStore::new();
/// let orders = TableSchema::builder("orders", KeyDef::int("id")).build()?;
/// store.ensure_table(&orders).await?;
/// for id in 0..100 {
///     let status = if id % 10 == 3 { "open" } else { "shipped" };
///     let order = json!({"id": id, "status": status});
///     store.put(&orders, order.as_object().cloned().unwrap_or_default()).await?;
/// }
/// let open = Scan::new().filter(Condition::eq("status", "open")).limit(4);
/// let page = store.scan(&orders, &open).await?;
/// assert_eq!(page.items.len(), 4); // full, though only 1 record in 10 matches
/// assert!(page.read >= 4);
/// let rest = store.scan(&orders, &open.clone().after(page.next.unwrap_or_default())).await?;
/// assert_eq!(rest.items.len(), 4);
///
/// // A read budget: at most 15 records read, so this page ends early, short but exact.
/// let cheap = store.scan(&orders, &open.read_budget(15)).await?;
/// assert_eq!((cheap.items.len(), cheap.read), (2, 15));
/// assert!(cheap.next.is_some());
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Scan {
    pub(crate) limit: usize,
    pub(crate) cursor: Option<String>,
    pub(crate) filter: Option<Condition>,
    pub(crate) read_budget: Option<u64>,
    pub(crate) consistency: Consistency,
    pub(crate) segment: Option<Segment>,
}

impl Default for Scan {
    fn default() -> Self {
        Self::new()
    }
}

impl Scan {
    /// Every record of the table, [`DEFAULT_PAGE`] to a page.
    #[must_use]
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_PAGE,
            cursor: None,
            filter: None,
            read_budget: None,
            consistency: Consistency::ReadAfterWrite,
            segment: None,
        }
    }

    /// At most `limit` records per page (1 to [`MAX_PAGE`](super::MAX_PAGE); [`DEFAULT_PAGE`]
    /// when unsaid).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after the page that returned `cursor` (see
    /// [`QueryPage::next`](super::QueryPage::next)), of a scan with the same filter.
    #[must_use]
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Only records meeting `condition`, checked by the database (a DynamoDB
    /// `FilterExpression`, a SQL `WHERE`); pages stay full. A second call adds to the first
    /// with `and`. It may test the key fields (see [`Scan`]).
    #[must_use]
    pub fn filter(mut self, condition: Condition) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(first) => first.and(condition),
            None => condition,
        });
        self
    }

    /// Reads at most `records` records for this page (1 to
    /// [`MAX_READ_BUDGET`](super::MAX_READ_BUDGET)), as [`Query::read_budget`](super::Query::read_budget)
    /// does for a query: a page may then end short, even empty, with a cursor that continues
    /// exactly after the last record read.
    #[must_use]
    pub fn read_budget(mut self, records: u64) -> Self {
        self.read_budget = Some(records);
        self
    }

    /// How fresh the records must be: [`Consistency::ReadAfterWrite`] by default. An eventual
    /// scan is a `Scan` with `ConsistentRead=false` on DynamoDB, billed half the read units
    /// (a full-table read is where that matters most); elsewhere it is read-after-write (see
    /// [`Query::consistency`](super::Query::consistency)).
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Reads only segment `index` of the table split into `total` disjoint segments
    /// ([`Segment`]), so that `total` workers (tasks, processes, machines) each scan one and
    /// together read every record once: DynamoDB's parallel scan (`Segment` and
    /// `TotalSegments`), the same contract on every backend. Cursors belong to their segment.
    /// [`scan_stream_parallel`](super::scan_stream_parallel) and
    /// [`Table::scan_all_parallel`](super::Table::scan_all_parallel) run every segment of a
    /// split at once in one process. A segment past the total, or a total of 0 or above
    /// [`MAX_SEGMENTS`], is [`Error::InvalidInput`] (`"segment"`) when the scan runs.
    ///
    /// ```
    /// # async fn run() -> storekit_core::Result<()> {
    /// use serde_json::json;
    /// use storekit_core::MemoryStore;
    /// use storekit_core::table::{KeyDef, Scan, TableSchema, TableStore};
    ///
    /// let store = MemoryStore::new();
    /// let events = TableSchema::builder("events", KeyDef::int("id")).build()?;
    /// store.ensure_table(&events).await?;
    /// for id in 0..50 {
    ///     store.put(&events, json!({"id": id}).as_object().cloned().unwrap_or_default()).await?;
    /// }
    /// let mut read = 0;
    /// for segment in 0..4 {
    ///     // Each of these could run on its own worker.
    ///     read += store.scan(&events, &Scan::new().segment(segment, 4)).await?.items.len();
    /// }
    /// assert_eq!(read, 50);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    #[must_use]
    pub fn segment(mut self, index: u32, total: u32) -> Self {
        self.segment = Some(Segment { index, total });
        self
    }

    /// The same scan continuing from `cursor`, or ending when there is none.
    pub(crate) fn continued(&self, cursor: Option<String>) -> Option<Self> {
        cursor.map(|cursor| Self {
            cursor: Some(cursor),
            ..self.clone()
        })
    }

    /// Checks the scan against its schema: the limit, the budget, and the filter's paths and
    /// operands.
    pub(crate) fn check(&self, schema: &TableSchema) -> Result<()> {
        query::check_limit(self.limit)?;
        query::check_budget(self.read_budget)?;
        if let Some(segment) = &self.segment {
            segment.check()?;
        }
        if let Some(filter) = &self.filter {
            filter.check(schema)?;
        }
        Ok(())
    }
}

/// A scan after every check, as a backend runs it: records of the table strictly after
/// `after` in the backend's own stable order, reading at most `budget` of them, returning at
/// most `fetch` that meet `filter` (see [`Fetched`](super::Fetched) for what it returns).
#[derive(Debug, Clone, Copy)]
pub struct TableScan<'a> {
    /// The key of the last record the previous page read.
    pub after: Option<&'a RecordKey>,
    /// How many records to return at most.
    pub fetch: usize,
    /// Only records meeting this condition, already checked against the schema; `fetch`
    /// counts the records that meet it.
    pub filter: Option<&'a Condition>,
    /// Read at most this many records (before the filter), 1 or more; `None`: no bound.
    pub budget: Option<u64>,
    /// How fresh the records must be ([`Scan::consistency`]).
    pub consistency: Consistency,
    /// Only the records of this segment ([`Scan::segment`]), checked; `after` is one of them.
    pub segment: Option<Segment>,
}

impl<'a> TableScan<'a> {
    /// Up to `fetch` records after `after`, unfiltered and without a budget, read
    /// consistently.
    #[must_use]
    pub fn all(after: Option<&'a RecordKey>, fetch: usize) -> Self {
        Self {
            after,
            fetch,
            filter: None,
            budget: None,
            consistency: Consistency::ReadAfterWrite,
            segment: None,
        }
    }
}
