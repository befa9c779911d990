//! Queries on a table or one of its indexes, their pages and their opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Record;
use super::schema::{IndexEntry, KeyDef, TableSchema, check_value};
use super::value::{KeyType, KeyValue, RecordKey};
use crate::{Error, Result};

/// Most records in one page.
pub const MAX_PAGE: usize = 1000;
/// Records in a page when the query does not say.
pub const DEFAULT_PAGE: usize = 100;

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

    /// Re-reads each index hit consistently and drops those that no longer match, on a
    /// backend whose index reads are eventual ([`Consistency::Eventual`]); elsewhere a no-op.
    #[must_use]
    pub fn verified(mut self) -> Self {
        self.verified = true;
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

/// How fresh reads of an index are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// A query sees every write that finished before it began.
    ReadAfterWrite,
    /// A query may miss recent writes or show records as they were (DynamoDB's global
    /// secondary indexes); [`Query::verified`] drops what no longer matches.
    Eventual,
}

/// One page of records.
#[derive(Debug, Clone)]
pub struct QueryPage<T = Record> {
    /// The records, in the query's order; as many as the limit unless this is the last page.
    pub items: Vec<T>,
    /// Where the next page starts, when there are more records.
    pub next: Option<String>,
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

/// What a cursor holds, before it is encoded.
#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// The query it continues: a hash of table, index, partition, condition and order.
    q: String,
    p: Position,
}

/// The fingerprint of a query, so a cursor works only for the query that made it.
pub(crate) fn fingerprint(schema: &TableSchema, query: &Query) -> String {
    let text = serde_json::json!([
        schema.name(),
        query.index,
        query.partition,
        query.sort,
        query.order
    ])
    .to_string();
    let digest = Sha256::digest(text.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Encodes where a page ended as an opaque cursor.
pub(crate) fn encode_cursor(fingerprint: &str, position: &Position) -> String {
    let body = CursorBody {
        q: fingerprint.to_owned(),
        p: position.clone(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a cursor made by [`encode_cursor`] for the same query; anything else, garbled or
/// made for another query, is [`Error::InvalidInput`].
pub(crate) fn decode_cursor(
    fingerprint: &str,
    cursor: &str,
    schema: &TableSchema,
    index: Option<usize>,
) -> Result<Position> {
    let invalid = || Error::invalid("cursor", "not a cursor this query returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if body.q != fingerprint {
        return Err(invalid());
    }
    schema.check_key(&body.p.key).map_err(|_| invalid())?;
    let sort_def = index.and_then(|i| schema.indexes()[i].sort());
    match (sort_def, &body.p.sort) {
        (Some(def), Some(value)) => check_value(def, value).map_err(|_| invalid())?,
        (None, None) => {}
        _ => return Err(invalid()),
    }
    Ok(body.p)
}

/// Checks a query against its schema: the index exists, the partition and condition have
/// the declared types, the limit is in range.
pub(crate) fn check(schema: &TableSchema, query: &Query) -> Result<Option<usize>> {
    if !(1..=MAX_PAGE).contains(&query.limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}, not {}", query.limit),
        ));
    }
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
