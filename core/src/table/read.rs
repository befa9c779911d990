//! Options of a read by key: how fresh it must be, and which paths it returns.

use super::expr::Path;
use super::projection::Projection;
use super::query::Consistency;

/// How [`TableStore::get_with`](super::TableStore::get_with) and
/// [`TableStore::get_many_with`](super::TableStore::get_many_with) read: consistently (the
/// default) or eventually, whole or projected.
///
/// ```
/// # async fn run() -> storekit_core::Result<()> {
/// use serde_json::json;
/// use storekit_core::MemoryStore;
/// use storekit_core::table::{Consistency, KeyDef, ReadOptions, RecordKey, TableSchema, TableStore};
///
/// let store = MemoryStore::new();
/// let carts = TableSchema::builder("carts", KeyDef::text("id")).build()?;
/// store.ensure_table(&carts).await?;
/// store.put(&carts, json!({"id": "c1", "items": 3}).as_object().cloned().unwrap_or_default()).await?;
/// // Half the read units on DynamoDB; read-after-write anyway on memory and SQL.
/// let cheap = ReadOptions::new().consistency(Consistency::Eventual).select(["items"]);
/// let found = store.get_with(&carts, &RecordKey::new("c1"), &cheap).await?;
/// assert_eq!(found.map(|r| r.document.get("items").cloned()), Some(Some(json!(3))));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub(crate) consistency: Consistency,
    pub(crate) select: Option<Projection>,
}

impl ReadOptions {
    /// A consistent read of whole records: what [`TableStore::get`](super::TableStore::get)
    /// does.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How fresh the record must be: [`Consistency::ReadAfterWrite`] by default;
    /// [`Consistency::Eventual`] is a `GetItem` (or `BatchGetItem`) with
    /// `ConsistentRead=false` on DynamoDB, which may return the record as it was a second or
    /// so ago (or miss a new one), for half the read units. Memory (unless it simulates
    /// index lag), SQLite and PostgreSQL answer it read-after-write
    /// ([`TableStore::eventual_reads`](super::TableStore::eventual_reads)).
    #[must_use]
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Returns only these document paths, plus the table's key fields, as
    /// [`TableStore::get_selected`](super::TableStore::get_selected) does. A second call
    /// replaces the first.
    #[must_use]
    pub fn select<P: Into<Path>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.select = Some(Projection::new(paths));
        self
    }

    /// A consistent read of `select`: what `get_selected` asks for.
    pub(crate) fn selecting(select: &Projection) -> Self {
        Self {
            consistency: Consistency::ReadAfterWrite,
            select: Some(select.clone()),
        }
    }

    /// The consistency asked for.
    #[must_use]
    pub fn read_consistency(&self) -> Consistency {
        self.consistency
    }

    /// The selection, if any.
    #[must_use]
    pub fn selection(&self) -> Option<&Projection> {
        self.select.as_ref()
    }
}
