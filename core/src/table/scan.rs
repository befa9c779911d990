//! Scans of a whole table: their options, as a caller gives them and as a backend runs them.

use super::expr::Condition;
use super::query::{self, DEFAULT_PAGE};
use super::schema::TableSchema;
use super::value::RecordKey;
use crate::Result;

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
}

impl<'a> TableScan<'a> {
    /// Up to `fetch` records after `after`, unfiltered and without a budget.
    #[must_use]
    pub fn all(after: Option<&'a RecordKey>, fetch: usize) -> Self {
        Self {
            after,
            fetch,
            filter: None,
            budget: None,
        }
    }
}
