//! [`Table`]: one table of a store, read and written as a serde type.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Condition, Document, KeyValue, Patch, Query, QueryPage, Record, RecordKey, Returning, Scan,
    TableSchema, TableStatus, TableStore, query_stream, scan_stream,
};
use crate::{Error, Result};

/// A record with the version it was read or written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The record.
    pub record: T,
    /// Its version: pass it to [`Table::replace`] or [`Table::delete_at`].
    pub version: u64,
}

/// One table of a [`TableStore`], read and written as `T`, which must serialise to a JSON
/// object whose fields include the schema's keys. Cheap to clone.
///
/// Every write checks that the record, as it will be stored, still reads back as `T` before
/// anything is written (a float field holding NaN, say, would not).
pub struct Table<T> {
    store: Arc<dyn TableStore>,
    schema: TableSchema,
    record: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            schema: self.schema.clone(),
            record: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("table", &self.schema.name())
            .field("store", &self.store)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Table<T> {
    /// The table `schema` declares, in `store`.
    pub fn new(store: Arc<dyn TableStore>, schema: TableSchema) -> Self {
        Self {
            store,
            schema,
            record: PhantomData,
        }
    }

    /// The table's schema.
    #[must_use]
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// The store underneath, for calls on documents.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn TableStore> {
        &self.store
    }

    /// See [`TableStore::ensure_table`].
    pub async fn ensure(&self) -> Result<TableStatus> {
        self.store.ensure_table(&self.schema).await
    }

    /// See [`TableStore::drop_table`].
    pub async fn drop(&self) -> Result<bool> {
        self.store.drop_table(&self.schema).await
    }

    /// Writes a new record; see [`TableStore::insert`].
    pub async fn insert(&self, record: &T) -> Result<Versioned<T>> {
        let (document, stored) = self.checked(record)?;
        let written = self.store.insert(&self.schema, document).await?;
        Ok(Versioned {
            record: stored,
            version: written.version,
        })
    }

    /// Writes a record whether or not it exists; see [`TableStore::put`].
    pub async fn put(&self, record: &T) -> Result<Versioned<T>> {
        let (document, stored) = self.checked(record)?;
        let written = self.store.put(&self.schema, document).await?;
        Ok(Versioned {
            record: stored,
            version: written.version,
        })
    }

    /// Overwrites a record still at `version`; see [`TableStore::replace`].
    pub async fn replace(&self, record: &T, version: u64) -> Result<Versioned<T>> {
        let (document, stored) = self.checked(record)?;
        let written = self.store.replace(&self.schema, document, version).await?;
        Ok(Versioned {
            record: stored,
            version: written.version,
        })
    }

    /// Reads the record, changes it with `change`, and writes it at the version read, reading
    /// and changing again if another write came first (so `change` may run more than once).
    /// An error from `change` ends the update with nothing written.
    pub async fn update(
        &self,
        key: impl Into<RecordKey>,
        mut change: impl FnMut(&mut T) -> Result<()> + Send,
    ) -> Result<Versioned<T>> {
        // The record as the last change made it, read back as stored: what the write that
        // lands (the one after the last change) holds.
        let mut stored = None;
        let mut change_document = |document: Document| -> Result<Document> {
            let mut record = from_document::<T>(document)?;
            change(&mut record)?;
            let (document, back) = self.checked(&record)?;
            stored = Some(back);
            Ok(document)
        };
        let key = key.into();
        let written = self
            .store
            .update(&self.schema, &key, &mut change_document)
            .await?;
        match stored {
            Some(record) => Ok(Versioned {
                record,
                version: written.version,
            }),
            None => self.typed(written),
        }
    }

    /// Deletes the record; `false` if it did not exist.
    pub async fn delete(&self, key: impl Into<RecordKey>) -> Result<bool> {
        self.store.delete(&self.schema, &key.into(), None).await
    }

    /// Deletes the record if it is still at `version`; see [`TableStore::delete`].
    pub async fn delete_at(&self, key: impl Into<RecordKey>, version: u64) -> Result<bool> {
        self.store
            .delete(&self.schema, &key.into(), Some(version))
            .await
    }

    /// Changes parts of the record in one request ([`Patch`]) and returns it as it is after;
    /// see [`TableStore::patch`].
    ///
    /// ```
    /// # async fn run(orders: storekit_core::table::Table<serde_json::Value>) -> storekit_core::Result<()> {
    /// use storekit_core::table::{Patch, RecordKey};
    ///
    /// let key = RecordKey::with_sort("ada", "o-1");
    /// let shipped = orders
    ///     .patch(key, Patch::new().set("status", "shipped").set("last_update", 1_700_000_000))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn patch(&self, key: impl Into<RecordKey>, patch: Patch) -> Result<Versioned<T>> {
        self.patch_if(key, patch, None).await
    }

    /// [`Table::patch`], only if `condition` holds on the record as it is
    /// ([`Error::Conflict`](crate::Error::Conflict) with `what` `"condition"` otherwise, and
    /// nothing changes).
    pub async fn patch_if(
        &self,
        key: impl Into<RecordKey>,
        patch: Patch,
        condition: impl Into<Option<Condition>>,
    ) -> Result<Versioned<T>> {
        let condition = condition.into();
        let patched = self
            .store
            .patch(
                &self.schema,
                &key.into(),
                &patch,
                condition.as_ref(),
                Returning::New,
            )
            .await?;
        Ok(Versioned {
            version: patched.version,
            record: from_document(patched.document.unwrap_or_default())?,
        })
    }

    /// Reads one record.
    pub async fn get(&self, key: impl Into<RecordKey>) -> Result<Option<Versioned<T>>> {
        self.store
            .get(&self.schema, &key.into())
            .await?
            .map(|r| self.typed(r))
            .transpose()
    }

    /// Reads records by key, in the order of `keys`.
    pub async fn get_many(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned<T>>>> {
        self.store
            .get_many(&self.schema, keys)
            .await?
            .into_iter()
            .map(|r| r.map(|r| self.typed(r)).transpose())
            .collect()
    }

    /// Whether the record exists.
    pub async fn contains(&self, key: impl Into<RecordKey>) -> Result<bool> {
        self.store.contains(&self.schema, &key.into()).await
    }

    /// The record holding `values` in the unique index `index`.
    pub async fn get_by_unique(
        &self,
        index: &str,
        values: &[KeyValue],
    ) -> Result<Option<Versioned<T>>> {
        self.store
            .get_by_unique(&self.schema, index, values)
            .await?
            .map(|r| self.typed(r))
            .transpose()
    }

    /// One page of a query; see [`Query`].
    pub async fn query(&self, query: Query) -> Result<QueryPage<Versioned<T>>> {
        let page = self.store.query(&self.schema, &query).await?;
        Ok(QueryPage {
            items: page
                .items
                .into_iter()
                .map(|r| self.typed(r))
                .collect::<Result<_>>()?,
            next: page.next,
            read: page.read,
        })
    }

    /// Every record the query matches, page after page as the stream is read.
    #[must_use]
    pub fn query_all(&self, query: Query) -> BoxStream<'static, Result<Versioned<T>>> {
        query_stream(self.store.clone(), self.schema.clone(), query)
            .map(|r| r.and_then(typed))
            .boxed()
    }

    /// One page of a scan of the table, in the backend's order; see [`Scan`] (filter, read
    /// budget).
    pub async fn scan(&self, scan: Scan) -> Result<QueryPage<Versioned<T>>> {
        let page = self.store.scan(&self.schema, &scan).await?;
        Ok(QueryPage {
            items: page
                .items
                .into_iter()
                .map(|r| self.typed(r))
                .collect::<Result<_>>()?,
            next: page.next,
            read: page.read,
        })
    }

    /// Every record the scan returns ([`Scan::new`]: every record of the table), page after
    /// page as the stream is read.
    #[must_use]
    pub fn scan_all(&self, scan: Scan) -> BoxStream<'static, Result<Versioned<T>>> {
        scan_stream(self.store.clone(), self.schema.clone(), scan)
            .map(|r| r.and_then(typed))
            .boxed()
    }

    /// How many records the table holds.
    pub async fn count(&self) -> Result<u64> {
        self.store.count(&self.schema).await
    }

    /// Writes up to [`MAX_BATCH`](super::MAX_BATCH) records whether or not they exist, and
    /// returns them as stored, in order; see [`TableStore::put_many`] for what is atomic on
    /// which backend.
    ///
    /// ```
    /// # async fn run(carts: storekit_core::table::Table<serde_json::Value>) -> storekit_core::Result<()> {
    /// use serde_json::json;
    /// use storekit_core::table::RecordKey;
    ///
    /// let written = carts
    ///     .put_many(&[json!({"id": "c1", "items": 2}), json!({"id": "c2", "items": 0})])
    ///     .await?;
    /// assert_eq!(written.len(), 2);
    /// carts.delete_many(&[RecordKey::new("c1"), RecordKey::new("c2")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_many(&self, records: &[T]) -> Result<Vec<Versioned<T>>> {
        let (documents, stored): (Vec<Document>, Vec<T>) = records
            .iter()
            .map(|record| self.checked(record))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let written = self.store.put_many(&self.schema, documents).await?;
        Ok(stored
            .into_iter()
            .zip(written)
            .map(|(record, written)| Versioned {
                record,
                version: written.version,
            })
            .collect())
    }

    /// Deletes up to [`MAX_BATCH`](super::MAX_BATCH) records by key; see
    /// [`TableStore::delete_many`].
    pub async fn delete_many(&self, keys: &[RecordKey]) -> Result<()> {
        self.store.delete_many(&self.schema, keys).await
    }

    /// The record as the document to store, and as it will read back once stored; a record
    /// that would not read back as `T` is refused here, before anything is written.
    fn checked(&self, record: &T) -> Result<(Document, T)> {
        let row = self.schema.row(to_document(record)?)?;
        let document = serde_json::Value::Object(row.into_document());
        let stored = T::deserialize(&document).map_err(|e| not_readable::<T>(&e))?;
        match document {
            serde_json::Value::Object(document) => Ok((document, stored)),
            _ => Err(Error::invalid("record", "must serialise to a JSON object")),
        }
    }

    #[allow(clippy::unused_self)]
    fn typed(&self, record: Record) -> Result<Versioned<T>> {
        typed(record)
    }

    // Conditional writes (issue 21, item 5).

    /// Writes a record only if `condition` holds on the one stored under its key (on an
    /// empty document when there is none); see [`TableStore::put_if`].
    ///
    /// ```
    /// # async fn run() -> storekit_core::Result<()> {
    /// use std::sync::Arc;
    /// use serde::{Deserialize, Serialize};
    /// use storekit_core::{Error, MemoryStore};
    /// use storekit_core::table::{Condition, KeyDef, Table, TableSchema};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Item { sku: String, stock: i64 }
    ///
    /// let schema = TableSchema::builder("items", KeyDef::text("sku")).build()?;
    /// let items: Table<Item> = Table::new(Arc::new(MemoryStore::new()), schema);
    /// items.ensure().await?;
    /// // Only if no record holds the key yet (an absent record has no `sku`).
    /// let new = Condition::not_exists("sku");
    /// items.put_if(&Item { sku: "lamp".into(), stock: 3 }, new.clone()).await?;
    /// let again = items.put_if(&Item { sku: "lamp".into(), stock: 9 }, new).await;
    /// assert!(matches!(again, Err(Error::Conflict { what: "condition", .. })));
    /// // Restock only while the stock is low.
    /// items.replace_if(&Item { sku: "lamp".into(), stock: 10 }, Condition::lt("stock", 5)).await?;
    /// // Delete only when sold out: it is not, so nothing is deleted.
    /// let gone = items.delete_if("lamp", Condition::eq("stock", 0)).await;
    /// assert!(matches!(gone, Err(Error::Conflict { what: "condition", .. })));
    /// assert_eq!(items.get("lamp").await?.map(|v| v.record.stock), Some(10));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    pub async fn put_if(&self, record: &T, condition: Condition) -> Result<Versioned<T>> {
        let (document, stored) = self.checked(record)?;
        let written = self
            .store
            .put_if(&self.schema, document, &condition)
            .await?;
        Ok(Versioned {
            record: stored,
            version: written.version,
        })
    }

    /// Overwrites a record that exists, only if `condition` holds on it; see
    /// [`TableStore::replace_if`].
    pub async fn replace_if(&self, record: &T, condition: Condition) -> Result<Versioned<T>> {
        let (document, stored) = self.checked(record)?;
        let written = self
            .store
            .replace_if(&self.schema, document, &condition)
            .await?;
        Ok(Versioned {
            record: stored,
            version: written.version,
        })
    }

    /// Deletes the record only if `condition` holds on it; see [`TableStore::delete_if`].
    pub async fn delete_if(&self, key: impl Into<RecordKey>, condition: Condition) -> Result<bool> {
        self.store
            .delete_if(&self.schema, &key.into(), &condition)
            .await
    }
}

fn typed<T: DeserializeOwned>(record: Record) -> Result<Versioned<T>> {
    Ok(Versioned {
        version: record.version,
        record: from_document(record.document)?,
    })
}

fn to_document<T: Serialize>(record: &T) -> Result<Document> {
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(document)) => Ok(document),
        Ok(_) => Err(Error::invalid("record", "must serialise to a JSON object")),
        Err(e) => Err(Error::invalid("record", e.to_string())),
    }
}

fn from_document<T: DeserializeOwned>(document: Document) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(document)).map_err(|e| not_readable::<T>(&e))
}

fn not_readable<T>(e: &serde_json::Error) -> Error {
    Error::invalid(
        "record",
        format!("does not read back as {}: {e}", std::any::type_name::<T>()),
    )
}
