//! Queries on a table or one of its indexes, their pages and their opaque cursors.

use std::sync::{Arc, OnceLock, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::expr::{Condition, Path};
use super::projection::Projection;
use super::schema::{IndexEntry, KeyDef, TableSchema, check_value};
use super::stored::Body;
use super::value::{KeyType, KeyValue, RecordKey};
use super::{Document, Record, StoredRecord};
use crate::{Error, Result};

/// Most records in one page.
pub const MAX_PAGE: usize = 1000;
/// Records in a page when the query does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Largest read budget ([`Query::read_budget`], [`Scan::read_budget`](super::Scan::read_budget)):
/// a billion records. A larger one is a mistake (a negative number cast to `u64`, say), not a
/// bound; leave the budget unset to read without one.
pub const MAX_READ_BUDGET: u64 = 1_000_000_000;

/// A condition on the sort key of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortCondition {
    /// Equal to.
    Eq(KeyValue),
    /// Less than.
    Lt(KeyValue),
    /// Less than or equal to.
    Le(KeyValue),
    /// Greater than.
    Gt(KeyValue),
    /// Greater than or equal to.
    Ge(KeyValue),
    /// Between the two, both included.
    Between(KeyValue, KeyValue),
    /// Starts with (text and bytes keys only).
    BeginsWith(KeyValue),
}

impl SortCondition {
    /// Whether `value` meets the condition.
    #[must_use]
    pub fn matches(&self, value: &KeyValue) -> bool {
        match self {
            Self::Eq(x) => value == x,
            Self::Lt(x) => value < x,
            Self::Le(x) => value <= x,
            Self::Gt(x) => value > x,
            Self::Ge(x) => value >= x,
            Self::Between(low, high) => low <= value && value <= high,
            Self::BeginsWith(prefix) => value.begins_with(prefix),
        }
    }

    fn values(&self) -> Vec<&KeyValue> {
        match self {
            Self::Eq(x)
            | Self::Lt(x)
            | Self::Le(x)
            | Self::Gt(x)
            | Self::Ge(x)
            | Self::BeginsWith(x) => vec![x],
            Self::Between(low, high) => vec![low, high],
        }
    }

    fn check(&self, def: &KeyDef) -> Result<()> {
        self.values()
            .into_iter()
            .try_for_each(|v| check_value(def, v))?;
        if let Self::BeginsWith(_) = self
            && !matches!(def.kind(), KeyType::Text | KeyType::Bytes)
        {
            return Err(Error::invalid(
                "query",
                "begins_with needs a text or bytes sort key",
            ));
        }
        if let Self::Between(low, high) = self
            && low > high
        {
            return Err(Error::invalid(
                "query",
                "between's low bound is above its high bound",
            ));
        }
        Ok(())
    }
}

/// The order of a query's results, by sort key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Order {
    /// Smallest first.
    #[default]
    Ascending,
    /// Largest first.
    Descending,
}

/// One query: a partition of the table or of one of its query indexes, optionally narrowed by
/// a condition on the sort key.
///
/// ```
/// use storekit_core::table::{Query, SortCondition};
///
/// let newest_first = Query::index("product-name-index", "lamp")
///     .sort(SortCondition::Gt(1_700_000_000.0.into()))
///     .descending()
///     .limit(20);
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) index: Option<String>,
    pub(crate) partition: KeyValue,
    pub(crate) sort: Option<SortCondition>,
    pub(crate) order: Order,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<String>,
    pub(crate) verified: bool,
    pub(crate) filter: Option<Condition>,
    pub(crate) select: Option<Projection>,
    pub(crate) read_budget: Option<u64>,
    pub(crate) whole: bool,
    pub(crate) consistency: Consistency,
}

impl Query {
    /// The records of one partition of the table, by its sort key.
    pub fn table(partition: impl Into<KeyValue>) -> Self {
        Self {
            index: None,
            partition: partition.into(),
            sort: None,
            order: Order::Ascending,
            limit: DEFAULT_PAGE,
            cursor: None,
            verified: false,
            filter: None,
            select: None,
            read_budget: None,
            whole: false,
            consistency: Consistency::ReadAfterWrite,
        }
    }

    /// The records of one partition of the query index `index`, by the index's sort key
    /// (ties by the table's key).
    pub fn index(index: impl Into<String>, partition: impl Into<KeyValue>) -> Self {
        Self {
            index: Some(index.into()),
            ..Self::table(partition)
        }
    }

    /// Only records whose sort key meets `condition`.
    #[must_use]
    pub fn sort(mut self, condition: SortCondition) -> Self {
        self.sort = Some(condition);
        self
    }

    /// Largest sort key first.
    #[must_use]
    pub fn descending(mut self) -> Self {
        self.order = Order::Descending;
        self
    }

    /// The order of results.
    #[must_use]
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// At most `limit` records per page (1 to [`MAX_PAGE`]; [`DEFAULT_PAGE`] when unsaid).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after the page that returned `cursor` (see [`QueryPage::next`]).
    #[must_use]
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Only records meeting `condition`, checked by the database after the key condition
    /// (a DynamoDB `FilterExpression`, a SQL `WHERE`). Pages stay full: [`Query::limit`]
    /// counts the records returned, and the store reads on until it has them or the
    /// partition ends. A second call adds to the first with `and`.
    #[must_use]
    pub fn filter(mut self, condition: Condition) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(first) => first.and(condition),
            None => condition,
        });
        self
    }

    /// Returns only these document paths of each record (`status`, `address.city`,
    /// `lines[2].sku`), plus the table's key fields, as partial documents: a DynamoDB
    /// `ProjectionExpression` (see [`projection`](super::projection) for the rule, the same on
    /// every backend). The filter still tests the whole record, and pages and cursors are
    /// those of the same query without a selection: a cursor holds a position in the
    /// query's order, which a selection does not change, so the selection is not part of
    /// what a cursor is bound to, and a page may continue with another selection or none.
    /// A second call replaces the first. Paths that overlap or conflict (`a` and `a.b`;
    /// `a.b` and `a[0]`) are [`Error::InvalidInput`] (`"projection"`) when the query runs.
    ///
    /// ```
    /// use storekit_core::table::Query;
    ///
    /// let summaries = Query::index("product-name-index", "lamp").select(["name", "price.amount"]);
    /// ```
    #[must_use]
    pub fn select<P: Into<Path>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.select = Some(Projection::new(paths));
        self
    }

    /// Reads at most `records` records for this page (1 to [`MAX_READ_BUDGET`]), to bound the
    /// cost of a selective [`Query::filter`]: the page ends early when that many have been read
    /// without filling it, and may then be short or even empty while [`QueryPage::next`] is set;
    /// the next page continues exactly after the last record read. Records read are counted as
    /// [`QueryPage::read`] counts them. Without a budget, pages stay full.
    ///
    /// ```
    /// use storekit_core::table::{Condition, Query};
    ///
    /// // At most 20 matches, reading at most 500 records of the partition to find them.
    /// let cheap = Query::table("orders-of-ann")
    ///     .filter(Condition::eq("status", "open"))
    ///     .limit(20)
    ///     .read_budget(500);
    /// ```
    #[must_use]
    pub fn read_budget(mut self, records: u64) -> Self {
        self.read_budget = Some(records);
        self
    }

    /// On an index that holds only some fields of each record ([`IndexProjection::KeysOnly`],
    /// [`IndexProjection::Include`]), returns the whole records rather than what the index
    /// holds: on DynamoDB each page's hits are read by key after the index `Query`, with one
    /// consistent `BatchGetItem` per 100 (a hit whose record was deleted or expired since is
    /// left out, so such a page may be short); SQL and memory read whole records anyway.
    /// [`Query::select`] then selects from the whole records; a filter still tests what the
    /// index holds. On an index that projects `ALL`, and on the table, a no-op.
    ///
    /// [`IndexProjection::KeysOnly`]: super::IndexProjection::KeysOnly
    /// [`IndexProjection::Include`]: super::IndexProjection::Include
    ///
    /// ```
    /// use storekit_core::table::Query;
    ///
    /// let full = Query::index("product-name-index", "lamp").whole_records();
    /// ```
    #[must_use]
    pub fn whole_records(mut self) -> Self {
        self.whole = true;
        self
    }

    /// Re-reads each index hit consistently and drops those that no longer match, on a
    /// backend whose index reads are eventual ([`Consistency::Eventual`]); elsewhere a no-op.
    #[must_use]
    pub fn verified(mut self) -> Self {
        self.verified = true;
        self
    }

    /// How fresh the records must be: [`Consistency::ReadAfterWrite`] by default, or
    /// [`Consistency::Eventual`] to let the store answer from a replica that may not have
    /// the latest writes yet, where that is cheaper.
    ///
    /// On DynamoDB an eventual table query is a `Query` with `ConsistentRead=false`, billed
    /// half the read units of a consistent one, and may miss writes of the last second or
    /// so. A query on a query index is a GSI query, eventual whatever is asked
    /// ([`TableStore::index_consistency`](super::TableStore::index_consistency)). Memory,
    /// SQLite and PostgreSQL have no replicas: an eventual read is read-after-write there
    /// ([`TableStore::eventual_reads`](super::TableStore::eventual_reads) says which a store
    /// gives), except on a memory store simulating index lag, whose eventual reads lag too.
    ///
    /// ```
    /// use storekit_core::table::{Consistency, Query};
    ///
    /// // A dashboard can live with a second-old answer, for half the read cost on DynamoDB.
    /// let cheap = Query::table("orders-of-ann").consistency(Consistency::Eventual);
    /// ```
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// The same query continuing from `cursor`, or ending when there is none.
    pub(crate) fn continued(&self, cursor: Option<String>) -> Option<Self> {
        cursor.map(|cursor| Self {
            cursor: Some(cursor),
            ..self.clone()
        })
    }
}

/// How fresh a read is: what a store gives ([`TableStore::index_consistency`],
/// [`TableStore::eventual_reads`]) and what a caller asks for ([`Query::consistency`],
/// [`Scan::consistency`](super::Scan::consistency), [`ReadOptions::consistency`]).
///
/// [`TableStore::index_consistency`]: super::TableStore::index_consistency
/// [`TableStore::eventual_reads`]: super::TableStore::eventual_reads
/// [`ReadOptions::consistency`]: super::ReadOptions::consistency
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// A read sees every write that finished before it began: the default of every read
    /// (a consistent read on DynamoDB, billed a full read unit per 4 KB).
    #[default]
    ReadAfterWrite,
    /// A query may miss recent writes or show records as they were (DynamoDB's global
    /// secondary indexes); [`Query::verified`] drops what no longer matches.
    Eventual,
}

/// One page of records.
#[derive(Debug, Clone)]
pub struct QueryPage<T = Record> {
    /// The records, in the query's order; as many as the limit unless this is the last page,
    /// or a page that its read budget ended early.
    pub items: Vec<T>,
    /// Where the next page starts, when there are more records: an opaque, URL-safe cursor
    /// for [`Query::after`] of the same query (or [`Scan::after`](super::Scan::after) of the
    /// same scan), authenticated (see [`set_cursor_key`]).
    pub next: Option<String>,
    /// How many records were read to fill this page: those the key condition selected (every
    /// record, for a scan), from the cursor on, before the filter and the expiry test, up to
    /// where the page ended (its last record, where its read budget ran out, or the end).
    ///
    /// On memory, SQLite and PostgreSQL this is exact: `read >= items.len()`, equal without a
    /// filter or expired records, and over all pages it adds up to the records of the range.
    /// On DynamoDB it is the sum of the `ScannedCount` of the page's requests, what DynamoDB
    /// read and bills: a request may read past the page's last record (what the next page then
    /// reads again), so it is at least the exact count, and never above the read budget.
    pub read: u64,
}

/// Where a page ended: the last record returned, by the key the query ordered it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Its sort key in the index (`None` for a table query or an index without one).
    pub sort: Option<KeyValue>,
    /// Its key in the table.
    pub key: RecordKey,
}

/// A query after every check, as a backend runs it: the records of `partition` in the index
/// (or table), meeting `sort`, in `order`, strictly after `after`, at most `fetch` of them.
///
/// Records are ordered by the index's sort key (all reversed when descending); a table query
/// orders by the table's sort key. Records that tie on an index's sort key come in the
/// backend's own stable order: the table's key on memory and SQL, the GSI's internal order on
/// DynamoDB. Either way a cursor continues after the last record returned, so each comes once.
#[derive(Debug, Clone, Copy)]
pub struct IndexQuery<'a> {
    /// The query index's position in the schema, or `None` for the table itself.
    pub index: Option<usize>,
    /// The partition.
    pub partition: &'a KeyValue,
    /// The condition on the sort key.
    pub sort: Option<&'a SortCondition>,
    /// The order.
    pub order: Order,
    /// Where the previous page ended.
    pub after: Option<&'a Position>,
    /// How many records to return at most.
    pub fetch: usize,
    /// Only records meeting this condition, already checked against the schema; `fetch`
    /// counts the records that meet it.
    pub filter: Option<&'a Condition>,
    /// Read at most this many records (before the filter), 1 or more; `None`: no bound.
    pub budget: Option<u64>,
    /// How fresh the records must be ([`Query::consistency`]); a backend without replicas
    /// reads the same either way.
    pub consistency: Consistency,
}

/// What a backend returns for one [`IndexQuery`] or [`TableScan`](super::TableScan): the
/// records that met the filter, and how much it read to find them.
/// The records are [`Record`]s, or [`StoredRecord`]s for a typed read
/// ([`TableBackend::query_stored`](crate::backend::TableBackend::query_stored)).
#[derive(Debug, Clone)]
pub struct Fetched<R = Record> {
    /// Up to `fetch` records meeting the filter, in order, after `after`.
    pub records: Vec<R>,
    /// For each record of `records`, how many records (before the filter) were read from
    /// `after` up to and including it; `None` where the database does not say (DynamoDB).
    pub read_through: Option<Vec<u64>>,
    /// How many records were read in all: up to the last record returned when `fetch` were
    /// found, else up to where reading stopped (the budget, or the end). On DynamoDB, the
    /// sum of `ScannedCount`.
    pub read: u64,
    /// When the budget ran out before `fetch` records were found and the range may go on: the
    /// last record read (its document, or at least its key fields and the index's, as a
    /// DynamoDB `LastEvaluatedKey` holds them), where the next read continues.
    pub cut: Option<Document>,
}

impl<R> Default for Fetched<R> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            read_through: None,
            read: 0,
            cut: None,
        }
    }
}

impl<R> Fetched<R> {
    /// This read and `next`, the read that continued after this one's cut, as one read: its
    /// records, then `next`'s, each counted from where this one began.
    #[must_use]
    pub fn followed_by(mut self, next: Self) -> Self {
        self.read_through = match (self.read_through, next.read_through) {
            (Some(mut through), Some(next)) => {
                through.extend(next.into_iter().map(|n| n + self.read));
                Some(through)
            }
            _ => None,
        };
        self.records.extend(next.records);
        self.read += next.read;
        self.cut = next.cut;
        self
    }

    /// Records that were each the only one read for them: what a read without a filter or a
    /// budget returns.
    #[must_use]
    pub fn unfiltered(records: Vec<R>) -> Self {
        let read = records.len() as u64;
        Self {
            read_through: Some((1..=read).collect()),
            read,
            records,
            cut: None,
        }
    }

    /// The same read, each record changed by `f`.
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn try_map<S>(self, f: impl FnMut(R) -> Result<S>) -> Result<Fetched<S>> {
        Ok(Fetched {
            records: self.records.into_iter().map(f).collect::<Result<_>>()?,
            read_through: self.read_through,
            read: self.read,
            cut: self.cut,
        })
    }
}

impl IndexQuery<'_> {
    /// Where `record` (with its `entry` in the index, for an index query) sits in this query's
    /// order; what a page's last record leaves as its cursor.
    #[must_use]
    pub fn position_of(&self, key: &RecordKey, entry: Option<&IndexEntry>) -> Position {
        Position {
            sort: match self.index {
                Some(_) => entry.and_then(|e| e.sort.clone()),
                None => None,
            },
            key: key.clone(),
        }
    }

    /// Where a record read by this query sits in its order, read from the record as the
    /// index returned it (its key, and the index's sort key from its fields).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when an index hit lacks the index's sort key; a backend error
    /// (of `backend`) when that key's stored value is not of its type.
    pub fn position_of_record(
        &self,
        schema: &TableSchema,
        record: &StoredRecord,
        backend: &'static str,
    ) -> Result<Position> {
        let sort = match self.index.and_then(|i| schema.indexes()[i].sort()) {
            Some(def) => Some(record.read_key(def, backend)?.ok_or_else(|| {
                Error::invalid(
                    "document",
                    format!("an index hit lacks its sort key {:?}", def.field()),
                )
            })?),
            None => None,
        };
        Ok(Position {
            sort,
            key: record.key.clone(),
        })
    }

    /// Where the last record read sits in this query's order, from its document (or the key
    /// fields a DynamoDB `LastEvaluatedKey` holds): a [`Fetched::cut`], where the next read
    /// continues.
    ///
    /// # Errors
    /// As [`IndexQuery::position_of_record`], and [`Error::InvalidInput`] when the document
    /// lacks the table's key.
    pub fn position_of_document(
        &self,
        schema: &TableSchema,
        document: &Document,
        backend: &'static str,
    ) -> Result<Position> {
        let record = StoredRecord {
            key: schema.key_of(document)?,
            version: 0,
            body: Body::Document(document.clone()),
        };
        self.position_of_record(schema, &record, backend)
    }

    /// Whether a record at `position` comes after `self.after` in this query's order.
    #[must_use]
    pub fn is_after(&self, position: &Position) -> bool {
        let Some(after) = self.after else { return true };
        let ordering = (&position.sort, &position.key).cmp(&(&after.sort, &after.key));
        match self.order {
            Order::Ascending => ordering.is_gt(),
            Order::Descending => ordering.is_lt(),
        }
    }
}

/// Bytes of a cursor's tag: HMAC-SHA256 cut to its first 128 bits, as RFC 2104 allows, which
/// keeps cursors short and forging one as hard as guessing a 128-bit key.
const TAG_BYTES: usize = 16;
/// Shortest key [`set_cursor_key`] takes: 256 bits, SHA-256's strength.
pub const MIN_CURSOR_KEY_BYTES: usize = 32;

/// The key set by [`set_cursor_key`], if any.
static SHARED_KEY: RwLock<Option<Arc<[u8]>>> = RwLock::new(None);
/// This process's own random key, made at the first cursor.
static PROCESS_KEY: OnceLock<Arc<[u8]>> = OnceLock::new();

/// Sets the key that authenticates table cursors, for every store in this process.
///
/// A cursor ([`QueryPage::next`]) is the position where a page ended, with an HMAC-SHA256 tag
/// over that position and the query it belongs to, so a cursor that was edited, made up, or
/// made for another query is [`Error::InvalidInput`] (`"cursor"`) before any database sees it.
///
/// By default the key is random and made once per process: nobody outside the process can
/// forge a cursor, and there is no secret to configure or leak, but a cursor is valid only
/// in the process that made it. Several processes or replicas of one service, behind one
/// load balancer, must share a key, so that a page made by one continues on another: give
/// each the same secret (at least [`MIN_CURSOR_KEY_BYTES`] random bytes, from your secret
/// store) before it serves queries. Setting a key again replaces it: cursors made with the
/// old key are refused from then on, as they would be after a restart without a shared key.
///
/// ```no_run
/// // At start-up, from a secret every replica shares (here a fixed one, for the example;
/// // not run, so that it changes no key under other tests of this process).
/// storekit_core::table::set_cursor_key(&[7u8; 32])?;
/// # Ok::<(), storekit_core::Error>(())
/// ```
pub fn set_cursor_key(key: &[u8]) -> Result<()> {
    if key.len() < MIN_CURSOR_KEY_BYTES {
        return Err(Error::invalid(
            "cursor key",
            format!(
                "is {} bytes; at least {MIN_CURSOR_KEY_BYTES} random bytes",
                key.len()
            ),
        ));
    }
    // A poisoned lock held only a key, which the write replaces whole.
    *SHARED_KEY.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(key));
    Ok(())
}

fn cursor_key() -> Result<Arc<[u8]>> {
    if let Some(key) = SHARED_KEY.read().unwrap_or_else(|p| p.into_inner()).clone() {
        return Ok(key);
    }
    if let Some(key) = PROCESS_KEY.get() {
        return Ok(key.clone());
    }
    let mut key = [0u8; MIN_CURSOR_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| Error::backend("random", e.to_string()))?;
    // Two first cursors racing: both use the key that won.
    Ok(PROCESS_KEY.get_or_init(|| Arc::from(key)).clone())
}

/// The MAC of a cursor's position for the query `fingerprint`, ready for its tag.
fn cursor_mac(fingerprint: &[u8; 32], position: &[u8]) -> Result<Hmac<Sha256>> {
    let key = cursor_key()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|e| Error::backend("hmac", e.to_string()))?;
    // The fingerprint has a fixed length, so where it ends and the position starts is known.
    mac.update(b"storekit cursor v1\0");
    mac.update(fingerprint);
    mac.update(position);
    Ok(mac)
}

/// The fingerprint of a query, so a cursor works only for the query that made it.
///
/// The SHA-256 of the JSON array `["query", table, index, partition, sort, order, filter]` as
/// `serde_json::Value` writes it (object keys sorted), so that cursors stay valid across
/// versions. It is written straight into the hash, not built as a `Value` and a `String`
/// first, which cost more than the rest of storekit's share of an index query: every part but
/// the filter serializes the same either way (their objects' keys are in order already), and
/// the filter, whose variants' fields are not, goes through a `Value`.
pub(crate) fn fingerprint(schema: &TableSchema, query: &Query) -> [u8; 32] {
    // A condition is plain data: it always serializes.
    let filter = (query.filter.as_ref()).and_then(|filter| serde_json::to_value(filter).ok());
    let mut hash = Hashing(Sha256::new());
    let parts = (
        "query",
        schema.name(),
        &query.index,
        &query.partition,
        &query.sort,
        query.order,
        filter,
    );
    // Writing into a hash cannot fail, and every part is plain data.
    let _ = serde_json::to_writer(&mut hash, &parts);
    hash.0.finalize().into()
}

/// A hash that JSON is written into.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fingerprint of a scan of the table with its filter (and segment), never that of a
/// query: a cursor of one segment cannot continue another.
pub(crate) fn scan_fingerprint(
    schema: &TableSchema,
    filter: Option<&Condition>,
    segment: Option<&super::Segment>,
) -> [u8; 32] {
    match (filter, segment) {
        // An unfiltered scan keeps the fingerprint it always had, so its cursors stay valid.
        (None, None) => digest(&serde_json::json!(["scan", schema.name()])),
        (Some(filter), None) => digest(&serde_json::json!(["scan", schema.name(), filter])),
        (filter, Some(segment)) => {
            digest(&serde_json::json!(["scan", schema.name(), filter, segment]))
        }
    }
}

/// Checks a read budget: 1 to [`MAX_READ_BUDGET`].
pub(crate) fn check_budget(budget: Option<u64>) -> Result<()> {
    match budget {
        Some(n) if !(1..=MAX_READ_BUDGET).contains(&n) => Err(Error::invalid(
            "read budget",
            format!("must be 1 to {MAX_READ_BUDGET} records, not {n}"),
        )),
        _ => Ok(()),
    }
}

fn digest(value: &serde_json::Value) -> [u8; 32] {
    Sha256::digest(value.to_string().as_bytes()).into()
}

/// Encodes where a page ended as an opaque cursor: URL-safe base64 of the position's JSON and
/// its tag.
pub(crate) fn encode_cursor(fingerprint: &[u8; 32], position: &Position) -> Result<String> {
    let mut bytes = serde_json::to_vec(position)
        .map_err(|e| Error::invalid("cursor", format!("a position did not encode: {e}")))?;
    let tag = cursor_mac(fingerprint, &bytes)?.finalize().into_bytes();
    bytes.extend_from_slice(&tag[..TAG_BYTES]);
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Decodes a cursor made by [`encode_cursor`] for the same query (`query`, with its `index`;
/// `None` for a scan); anything else, garbled, edited or made for another query, is
/// [`Error::InvalidInput`].
///
/// The tag already rules out any edit; the position is still checked against the query, so
/// that a cursor made under a leaked or shared key can reach no record the query itself
/// could not return, and no backend ever gets a position outside its query.
pub(crate) fn decode_cursor(
    fingerprint: &[u8; 32],
    cursor: &str,
    schema: &TableSchema,
    query: Option<(&Query, Option<usize>)>,
) -> Result<Position> {
    let invalid = || Error::invalid("cursor", "not a cursor this query returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let split = bytes.len().checked_sub(TAG_BYTES).ok_or_else(invalid)?;
    let (body, tag) = bytes.split_at(split);
    cursor_mac(fingerprint, body)?
        .verify_truncated_left(tag)
        .map_err(|_| invalid())?;
    let position: Position = serde_json::from_slice(body).map_err(|_| invalid())?;
    schema.check_key(&position.key).map_err(|_| invalid())?;
    let Some((query, index)) = query else {
        return match position.sort {
            None => Ok(position),
            Some(_) => Err(invalid()),
        };
    };
    let in_query = match index {
        // A table query: the key is in the query's partition and meets its sort condition.
        None => {
            position.sort.is_none()
                && position.key.partition == query.partition
                && match (&query.sort, &position.key.sort) {
                    (Some(condition), Some(sort)) => condition.matches(sort),
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        }
        // An index query: the index sort key has its type and meets the condition. (The
        // record's own key can be anything; its index partition is not in the position.)
        Some(i) => match (schema.indexes()[i].sort(), &position.sort) {
            (Some(def), Some(value)) => {
                check_value(def, value).is_ok()
                    && query.sort.as_ref().is_none_or(|c| c.matches(value))
            }
            (None, None) => true,
            _ => false,
        },
    };
    if !in_query {
        return Err(invalid());
    }
    Ok(position)
}

/// On a partial index, a filter tests what the index holds, and a selection (unless the
/// query asks for whole records) selects from it: a path outside it would read as missing on
/// DynamoDB, silently, so it is refused on every backend.
fn check_held(schema: &TableSchema, query: &Query, index: usize, held: &[&str]) -> Result<()> {
    let name = schema.indexes()[index].name();
    let outside = |path: &Path| (!held.contains(&path.field())).then(|| path.field().to_owned());
    let mut first = None;
    if let Some(filter) = &query.filter {
        filter.visit_paths(&mut |path| {
            if first.is_none() {
                first = outside(path);
            }
        });
    }
    if let Some(field) = first {
        return Err(Error::invalid(
            "condition",
            format!(
                "index {name:?} holds only the fields {held:?}: a filter cannot test {field:?}"
            ),
        ));
    }
    if !query.whole
        && let Some(field) = query
            .select
            .iter()
            .flat_map(Projection::paths)
            .find_map(outside)
    {
        return Err(Error::invalid(
            "projection",
            format!(
                "index {name:?} holds only the fields {held:?}: select from those, or ask for \
                 whole records (`Query::whole_records`) to select {field:?}"
            ),
        ));
    }
    Ok(())
}

/// Checks a page's limit: 1 to [`MAX_PAGE`].
pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    Ok(())
}

/// Checks a query against its schema: the index exists, the partition and condition have
/// the declared types, the limit and read budget are in range.
pub(crate) fn check(schema: &TableSchema, query: &Query) -> Result<Option<usize>> {
    check_limit(query.limit)?;
    check_budget(query.read_budget)?;
    let index = query
        .index
        .as_deref()
        .map(|name| schema.index_position(name))
        .transpose()?;
    let (partition, sort) = match index {
        Some(i) => (schema.indexes()[i].partition(), schema.indexes()[i].sort()),
        None => (schema.partition(), schema.sort()),
    };
    check_value(partition, &query.partition)?;
    if let Some((i, held)) = index.and_then(|i| Some((i, schema.index_fields(i)?))) {
        check_held(schema, query, i, &held)?;
    }
    if let Some(filter) = &query.filter {
        filter.check(schema)?;
        // DynamoDB filters only what the key condition does not decide: a filter on the
        // table's key, or on the queried index's, is refused there, so it is refused here.
        let keys: Vec<&str> = [
            Some(schema.partition()),
            schema.sort(),
            Some(partition),
            sort,
        ]
        .into_iter()
        .flatten()
        .map(KeyDef::field)
        .collect();
        let mut on_key = None;
        filter.visit_paths(&mut |path| {
            if on_key.is_none() && keys.contains(&path.field()) {
                on_key = Some(path.field().to_owned());
            }
        });
        if let Some(field) = on_key {
            return Err(Error::invalid(
                "condition",
                format!(
                    "a filter cannot test the key field {field:?} of the table or the queried \
                     index: use the partition and sort condition"
                ),
            ));
        }
    }
    match (&query.sort, sort) {
        (Some(condition), Some(def)) => condition.check(def)?,
        (Some(_), None) => {
            return Err(Error::invalid(
                "query",
                "a condition on a sort key the index does not have",
            ));
        }
        (None, _) => {}
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::table::KeyDef;
    use crate::table::expr::{Comparison, Operand};

    fn schema() -> TableSchema {
        TableSchema::builder("things", KeyDef::text("p"))
            .sort_key(KeyDef::int("s"))
            .index("by-n", KeyDef::text("g"), Some(KeyDef::int("n")))
            .build()
            .expect("valid schema")
    }

    /// The fingerprint, written straight into the hash, is the one the `Value` made (so that
    /// cursors stay valid across versions), for queries with every kind of part.
    #[test]
    fn fingerprints_are_those_of_the_json_value() {
        let schema = schema();
        let bytes = Operand::bytes(vec![0, 255]);
        let filters = [
            Condition::ge("price_cents", 101),
            Condition::between("a.b[2]", 1.5, "z"),
            Condition::is_in("tag", [json!({"z": 1, "a": [true, null]}), json!("x")])
                .and(Condition::not(Condition::begins_with("name", "l"))),
            Condition::size("lines", Comparison::Gt, 3).or(Condition::eq("blob", bytes)),
        ];
        let mut queries = vec![
            Query::table("p"),
            Query::table("p").sort(SortCondition::Between(1.into(), 9.into())),
            Query::index("by-n", "g").descending(),
            Query::index("by-n", KeyValue::Bytes(vec![1, 2])).sort(SortCondition::Gt(2.5.into())),
        ];
        for filter in filters {
            queries.push(Query::index("by-n", "g").filter(filter.clone()));
            queries.push(Query::table("p").descending().filter(filter));
        }
        for query in queries {
            let old = serde_json::json!([
                "query",
                schema.name(),
                query.index,
                query.partition,
                query.sort,
                query.order,
                query.filter
            ]);
            let want: [u8; 32] = Sha256::digest(old.to_string().as_bytes()).into();
            assert_eq!(fingerprint(&schema, &query), want, "{query:?}");
        }
    }

    fn at(partition: &str, sort: i64) -> Position {
        Position {
            sort: None,
            key: RecordKey::with_sort(partition, sort),
        }
    }

    fn decode(query: &Query, cursor: &str) -> Result<Position> {
        let schema = schema();
        let index = check(&schema, query)?;
        decode_cursor(
            &fingerprint(&schema, query),
            cursor,
            &schema,
            Some((query, index)),
        )
    }

    fn refused(result: &Result<Position>) -> bool {
        matches!(result, Err(Error::InvalidInput { what: "cursor", .. }))
    }

    #[test]
    fn a_cursor_continues_its_own_query_only() -> Result<()> {
        let schema = schema();
        let query = Query::table("a").sort(SortCondition::Gt(KeyValue::Int(0)));
        let cursor = encode_cursor(&fingerprint(&schema, &query), &at("a", 5))?;
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode(&query, &cursor)?, at("a", 5));
        assert!(refused(&decode(&query.descending(), &cursor)));
        assert!(refused(&decode(&Query::table("b"), &cursor)));
        let scan = decode_cursor(
            &scan_fingerprint(&schema, None, None),
            &cursor,
            &schema,
            None,
        );
        assert!(refused(&scan));
        Ok(())
    }

    #[test]
    fn every_edit_of_a_cursor_is_refused() -> Result<()> {
        let schema = schema();
        let query = Query::table("a");
        let cursor = encode_cursor(&fingerprint(&schema, &query), &at("a", 5))?;
        let alphabet = b"AZaz09-_";
        for i in 0..cursor.len() {
            for &c in alphabet {
                let mut edited = cursor.clone().into_bytes();
                edited[i] = c;
                let edited = String::from_utf8(edited).unwrap_or_default();
                if edited != cursor {
                    assert!(refused(&decode(&query, &edited)), "{edited}");
                }
            }
            let mut deleted = cursor.clone();
            deleted.remove(i);
            assert!(refused(&decode(&query, &deleted)));
        }
        // The position's JSON edited with its tag kept: another sort key, another partition.
        let bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).replace("\"v\":5", "\"v\":6");
        assert!(refused(&decode(&query, &URL_SAFE_NO_PAD.encode(text))));
        Ok(())
    }

    #[test]
    fn a_position_outside_its_query_is_refused_even_with_a_valid_tag() -> Result<()> {
        let schema = schema();
        let query =
            Query::table("a").sort(SortCondition::Between(KeyValue::Int(1), KeyValue::Int(9)));
        let print = fingerprint(&schema, &query);
        assert!(decode(&query, &encode_cursor(&print, &at("a", 9))?).is_ok());
        for outside in [at("b", 5), at("a", 10)] {
            assert!(refused(&decode(&query, &encode_cursor(&print, &outside)?)));
        }
        let index = Query::index("by-n", "g").sort(SortCondition::Lt(KeyValue::Int(3)));
        let print = fingerprint(&schema, &index);
        let hit = |n: i64| Position {
            sort: Some(KeyValue::Int(n)),
            key: RecordKey::with_sort("z", 1),
        };
        assert!(decode(&index, &encode_cursor(&print, &hit(2))?).is_ok());
        assert!(refused(&decode(&index, &encode_cursor(&print, &hit(3))?)));
        Ok(())
    }

    #[test]
    fn a_short_cursor_key_is_refused() {
        assert!(matches!(
            set_cursor_key(&[1; MIN_CURSOR_KEY_BYTES - 1]),
            Err(Error::InvalidInput {
                what: "cursor key",
                ..
            })
        ));
    }
}
