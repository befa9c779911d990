//! [`Table`]: one table of a store, read and written as a serde type.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Condition, Document, KeyValue, Patch, Projection, Query, QueryPage, ReadOptions, Record,
    RecordKey, Returning, Scan, StoredRecord, TableSchema, TableStatus, TableStore, query_stream,
    scan_stream, scan_stream_parallel,
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
    /// An error from `change` ends the update with nothing written, and is returned as it
    /// was: `change` fails with the caller's own error type `E`, which storekit's errors
    /// convert into. Where nothing else names `E`, say which it is, as with any closure
    /// generic over its error (`Ok::<_, storekit_core::Error>(())`, or `update::<MyError>`).
    ///
    /// Prefer [`Table::patch`] when the change can be said as a [`Patch`] (one request, no
    /// retries); `update` is for changes that need the record's current value in Rust.
    ///
    /// ```
    /// # use storekit_core::table::Table;
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Order { id: String, status: String, total_cents: u64 }
    /// #[derive(Debug)]
    /// enum ShipError {
    ///     AlreadyShipped,
    ///     Store(storekit_core::Error),
    /// }
    /// impl From<storekit_core::Error> for ShipError {
    ///     fn from(e: storekit_core::Error) -> Self {
    ///         Self::Store(e)
    ///     }
    /// }
    ///
    /// async fn ship(orders: &Table<Order>, id: &str) -> Result<(), ShipError> {
    ///     orders
    ///         .update(id, |order| {
    ///             if order.status == "shipped" {
    ///                 return Err(ShipError::AlreadyShipped);
    ///             }
    ///             order.status = "shipped".to_owned();
    ///             Ok(())
    ///         })
    ///         .await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn update<E>(
        &self,
        key: impl Into<RecordKey>,
        mut change: impl FnMut(&mut T) -> std::result::Result<(), E> + Send,
    ) -> std::result::Result<Versioned<T>, E>
    where
        E: From<Error> + Send,
    {
        // The record as the last change made it, read back as stored: what the write that
        // lands (the one after the last change) holds.
        let mut stored = None;
        // The caller's error, kept aside while the store unwinds with a stand-in of its own:
        // the store's update speaks only storekit's error type.
        let mut refused = None;
        let mut change_document = |document: Document| -> Result<Document> {
            let mut record = from_document::<T>(document)?;
            if let Err(e) = change(&mut record) {
                refused = Some(e);
                return Err(Error::invalid("update", "the change refused the record"));
            }
            let (document, back) = self.checked(&record)?;
            stored = Some(back);
            Ok(document)
        };
        let key = key.into();
        let written = self
            .store
            .update(&self.schema, &key, &mut change_document)
            .await;
        let written = match (written, refused) {
            (Err(_), Some(caller)) => return Err(caller),
            (written, _) => written?,
        };
        match stored {
            Some(record) => Ok(Versioned {
                record,
                version: written.version,
            }),
            None => Ok(self.typed(written)?),
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
        let patched = self
            .patch_returning::<T>(key, patch, condition, Returning::New)
            .await?;
        Ok(Versioned {
            version: patched.version,
            // A backend that answered `New` with nothing answers as an empty record would.
            record: match patched.record {
                Some(record) => record,
                None => from_document(Document::new())?,
            },
        })
    }

    /// [`Table::patch_if`], returning what `returning` asks for read as `P`, which may be a
    /// type of a few fields: [`Returning::UpdatedNew`] gives the top-level fields the patch
    /// touched, as DynamoDB's `ReturnValues=UPDATED_NEW` does; [`Returning::None`] gives
    /// `None` (and reads nothing back). The version is the record's after the patch.
    ///
    /// ```
    /// # async fn run(orders: storekit_core::table::Table<serde_json::Value>) -> storekit_core::Result<()> {
    /// use storekit_core::table::{Patch, RecordKey, Returning};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct StatusChange {
    ///     status: String,
    ///     last_update: i64,
    /// }
    /// // `SET status = :s, last_update = :t` with `ReturnValues=UPDATED_NEW`: one request.
    /// let patched = orders
    ///     .patch_returning::<StatusChange>(
    ///         RecordKey::with_sort("ada", "o-1"),
    ///         Patch::new().set("status", "shipped").set("last_update", 1_700_000_000),
    ///         None,
    ///         Returning::UpdatedNew,
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn patch_returning<P: DeserializeOwned>(
        &self,
        key: impl Into<RecordKey>,
        patch: Patch,
        condition: impl Into<Option<Condition>>,
        returning: Returning,
    ) -> Result<Versioned<Option<P>>> {
        let condition = condition.into();
        let patched = self
            .store
            .patch(
                &self.schema,
                &key.into(),
                &patch,
                condition.as_ref(),
                returning,
            )
            .await?;
        Ok(Versioned {
            version: patched.version,
            record: patched.document.map(from_document).transpose()?,
        })
    }

    /// Reads one record.
    pub async fn get(&self, key: impl Into<RecordKey>) -> Result<Option<Versioned<T>>> {
        self.store
            .get_stored(&self.schema, &key.into())
            .await?
            .map(versioned)
            .transpose()
    }

    /// Reads records by key, in the order of `keys`.
    pub async fn get_many(&self, keys: &[RecordKey]) -> Result<Vec<Option<Versioned<T>>>> {
        self.store
            .get_many_stored(&self.schema, keys)
            .await?
            .into_iter()
            .map(|r| r.map(versioned).transpose())
            .collect()
    }

    /// Reads one record with [`ReadOptions`] (eventually consistent, if asked); see
    /// [`TableStore::get_with`]. With a selection, the partial record must still read as `T`
    /// ([`Table::get_as`] reads it as another type).
    pub async fn get_with(
        &self,
        key: impl Into<RecordKey>,
        options: &ReadOptions,
    ) -> Result<Option<Versioned<T>>> {
        self.store
            .get_with(&self.schema, &key.into(), options)
            .await?
            .map(|r| self.typed(r))
            .transpose()
    }

    /// Reads records by key with [`ReadOptions`], in the order of `keys`; see
    /// [`TableStore::get_many_with`].
    pub async fn get_many_with(
        &self,
        keys: &[RecordKey],
        options: &ReadOptions,
    ) -> Result<Vec<Option<Versioned<T>>>> {
        self.store
            .get_many_with(&self.schema, keys, options)
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
        let page = self.store.query_stored(&self.schema, &query).await?;
        Ok(QueryPage {
            items: page
                .items
                .into_iter()
                .map(versioned)
                .collect::<Result<_>>()?,
            next: page.next,
            read: page.read,
        })
    }

    /// One page of a query whose records read as `P`, another serde type than the table's:
    /// with [`Query::select`], a type of the selected fields, reading the partial documents
    /// (the selected paths and the table's key fields). A record that does not read as `P`
    /// is [`InvalidInput`](crate::Error::InvalidInput) (`"projection"`) naming `P`.
    ///
    /// ```
    /// # async fn run() -> storekit_core::Result<()> {
    /// use std::sync::Arc;
    /// use serde::{Deserialize, Serialize};
    /// use storekit_core::MemoryStore;
    /// use storekit_core::table::{KeyDef, Projection, Query, RecordKey, Table, TableSchema};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Order { customer: String, id: String, status: String, total: i64, notes: String }
    /// #[derive(Deserialize)]
    /// struct Status { id: String, status: String }
    ///
    /// let schema = TableSchema::builder("orders", KeyDef::text("customer"))
    ///     .sort_key(KeyDef::text("id"))
    ///     .build()?;
    /// let orders: Table<Order> = Table::new(Arc::new(MemoryStore::new()), schema);
    /// orders.ensure().await?;
    /// let order = |id: &str, status: &str| Order {
    ///     customer: "c1".into(), id: id.into(), status: status.into(), total: 5, notes: "…".into(),
    /// };
    /// orders.insert(&order("o1", "open")).await?;
    /// orders.insert(&order("o2", "shipped")).await?;
    /// let page = orders.query_as::<Status>(Query::table("c1").select(["status"])).await?;
    /// let statuses: Vec<_> = page.items.iter().map(|s| (&*s.record.id, &*s.record.status)).collect();
    /// assert_eq!(statuses, [("o1", "open"), ("o2", "shipped")]);
    /// let one = orders.get_as::<Status>(RecordKey::with_sort("c1", "o2"), &Projection::new(["status"])).await?;
    /// assert_eq!(one.map(|s| s.record.status), Some("shipped".to_owned()));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    pub async fn query_as<P: DeserializeOwned>(
        &self,
        query: Query,
    ) -> Result<QueryPage<Versioned<P>>> {
        let page = self.store.query(&self.schema, &query).await?;
        Ok(QueryPage {
            items: page.items.into_iter().map(partial).collect::<Result<_>>()?,
            next: page.next,
            read: page.read,
        })
    }

    /// Reads the `select`ed paths of one record as `P`; see [`TableStore::get_selected`] and
    /// [`Table::query_as`].
    pub async fn get_as<P: DeserializeOwned>(
        &self,
        key: impl Into<RecordKey>,
        select: &Projection,
    ) -> Result<Option<Versioned<P>>> {
        self.store
            .get_selected(&self.schema, &key.into(), select)
            .await?
            .map(partial)
            .transpose()
    }

    /// Reads the `select`ed paths of records by key as `P`, in the order of `keys`; see
    /// [`TableStore::get_many_selected`].
    pub async fn get_many_as<P: DeserializeOwned>(
        &self,
        keys: &[RecordKey],
        select: &Projection,
    ) -> Result<Vec<Option<Versioned<P>>>> {
        self.store
            .get_many_selected(&self.schema, keys, select)
            .await?
            .into_iter()
            .map(|r| r.map(partial).transpose())
            .collect()
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
        let page = self.store.scan_stored(&self.schema, &scan).await?;
        Ok(QueryPage {
            items: page
                .items
                .into_iter()
                .map(versioned)
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

    /// Every record the scan returns, reading `segments` segments of the table at once
    /// ([`scan_stream_parallel`]), in no order.
    #[must_use]
    pub fn scan_all_parallel(
        &self,
        scan: Scan,
        segments: u32,
    ) -> BoxStream<'static, Result<Versioned<T>>> {
        scan_stream_parallel(self.store.clone(), self.schema.clone(), scan, segments)
            .map(|r| r.and_then(typed))
            .boxed()
    }

    /// How many records the table holds: a read of the whole table (see
    /// [`TableStore::count`] for the cost).
    pub async fn count(&self) -> Result<u64> {
        self.store.count(&self.schema).await
    }

    /// How many records `query` matches, reading only its range; see
    /// [`TableStore::count_query`].
    pub async fn count_query(&self, query: Query) -> Result<u64> {
        self.store.count_query(&self.schema, &query).await
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

/// A stored record read as `T`, its text (if the backend kept one) parsed straight into it.
fn versioned<T: DeserializeOwned>(stored: StoredRecord) -> Result<Versioned<T>> {
    Ok(Versioned {
        version: stored.version,
        record: stored.read()?,
    })
}

fn typed<T: DeserializeOwned>(record: Record) -> Result<Versioned<T>> {
    Ok(Versioned {
        version: record.version,
        record: from_document(record.document)?,
    })
}

/// A projected record as `P`.
fn partial<P: DeserializeOwned>(record: Record) -> Result<Versioned<P>> {
    Ok(Versioned {
        version: record.version,
        record: serde_json::from_value(serde_json::Value::Object(record.document)).map_err(
            |e| {
                Error::invalid(
                    "projection",
                    format!(
                        "the record does not read as {}: {e}",
                        std::any::type_name::<P>()
                    ),
                )
            },
        )?,
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
