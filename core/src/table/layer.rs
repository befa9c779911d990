//! [`TableStore`] for every [`TableBackend`]: the checks, pages, cursors, verification and
//! retries of each call, its span and its error context, once for every backend.

use std::time::Duration;

use async_trait::async_trait;

use super::query::{self, fingerprint};
use super::{
    Change, Consistency, Document, IndexQuery, KeyDef, KeyValue, MissingIndexes, Position, Query,
    QueryPage, Record, RecordKey, Row, TableSchema, TableStatus, TableStore, same_table_name,
};
use crate::backend::TableBackend;
use crate::trace::{Call, call_span};
use crate::{Error, Result};

/// Most attempts of one [`TableStore::update`] before the conflict is returned.
const UPDATE_ATTEMPTS: u32 = 100;
/// Most keys in one `get_many`.
const MAX_GET_MANY: usize = 1000;
/// Records read per page while checking a table's records against indexes about to be added.
const CHECK_PAGE: usize = 500;

/// Opens the call's span: `call!(backend, "op", schema)`.
macro_rules! call {
    ($backend:expr, $op:literal, $schema:expr) => {{
        let system = $backend.system();
        Call::new(call_span!(system, $op, $schema.name()), system, $op)
    }};
}

fn about_table(schema: &TableSchema) -> String {
    format!("table {:?}", schema.name())
}

fn about_key(schema: &TableSchema, key: &RecordKey) -> String {
    match &key.sort {
        Some(sort) => format!(
            "table {:?}, key ({:?}, {:?})",
            schema.name(),
            key.partition,
            sort
        ),
        None => format!("table {:?}, key {:?}", schema.name(), key.partition),
    }
}

fn record(row: Row, version: u64) -> Record {
    let key = row.key().clone();
    Record {
        key,
        version,
        document: row.into_document(),
    }
}

#[async_trait]
impl<B: TableBackend> TableStore for B {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<TableStatus> {
        call!(self, "ensure_table", schema)
            .run(
                async {
                    let created = match self.describe_table(schema).await? {
                        Some(_) => false,
                        None => {
                            refuse_case_twin(self, schema).await?;
                            self.create_table(schema).await?;
                            true
                        }
                    };
                    // Read back even after creating: a concurrent call may have created it
                    // from another schema.
                    let live = self
                        .describe_table(schema)
                        .await?
                        .ok_or(Error::NotFound { what: "table" })?;
                    let missing = live.compare(schema)?;
                    if missing.is_empty() {
                        return Ok(if created {
                            TableStatus::Created
                        } else {
                            TableStatus::Unchanged
                        });
                    }
                    let nulls = check_new_indexes(self, schema, &missing).await?;
                    if !nulls.is_empty() {
                        clear_nulls(self, schema, &live, &missing, nulls).await?;
                    }
                    self.add_indexes(schema, &missing).await?;
                    let names = missing
                        .indexes
                        .iter()
                        .map(|&i| schema.indexes()[i].name().to_owned())
                        .chain(
                            missing
                                .uniques
                                .iter()
                                .map(|&u| schema.uniques()[u].name().to_owned()),
                        )
                        .collect();
                    Ok(TableStatus::IndexesAdded(names))
                },
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
        call!(self, "drop_table", schema)
            .run(
                TableBackend::drop_table(self, schema),
                |_| None,
                || about_table(schema),
            )
            .await
    }

    fn index_consistency(&self) -> Consistency {
        TableBackend::index_consistency(self)
    }

    async fn insert(&self, schema: &TableSchema, document: Document) -> Result<Record> {
        call!(self, "insert", schema)
            .run(
                async {
                    let row = schema.row(document)?;
                    TableBackend::insert(self, schema, &row)
                        .await
                        .map_err(|e| e.during("insert", || about_key(schema, row.key())))?;
                    Ok(record(row, 1))
                },
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn put(&self, schema: &TableSchema, document: Document) -> Result<Record> {
        call!(self, "put", schema)
            .run(
                async {
                    let row = schema.row(document)?;
                    let version = TableBackend::put(self, schema, &row)
                        .await
                        .map_err(|e| e.during("put", || about_key(schema, row.key())))?;
                    Ok(record(row, version))
                },
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn replace(
        &self,
        schema: &TableSchema,
        document: Document,
        version: u64,
    ) -> Result<Record> {
        call!(self, "replace", schema)
            .run(
                async {
                    let row = schema.row(document)?;
                    TableBackend::replace(self, schema, &row, version)
                        .await
                        .map_err(|e| e.during("replace", || about_key(schema, row.key())))?;
                    Ok(record(row, version + 1))
                },
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn update(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        change: Change<'_>,
    ) -> Result<Record> {
        call!(self, "update", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        let current = TableBackend::get(self, schema, key)
                            .await?
                            .ok_or(Error::NotFound { what: "record" })?;
                        let row = schema.row(change(current.document)?)?;
                        if row.key() != key {
                            return Err(Error::invalid(
                                "document",
                                "an update cannot change the record's key",
                            ));
                        }
                        match TableBackend::replace(self, schema, &row, current.version).await {
                            Ok(()) => return Ok(record(row, current.version + 1)),
                            // Lost to a concurrent write or delete: read again.
                            Err(Error::Conflict { .. } | Error::NotFound { .. })
                                if attempt < UPDATE_ATTEMPTS =>
                            {
                                tokio::time::sleep(backoff(attempt)).await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                },
                |_| None,
                || about_key(schema, key),
            )
            .await
    }

    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        version: Option<u64>,
    ) -> Result<bool> {
        call!(self, "delete", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    TableBackend::delete(self, schema, key, version).await
                },
                |deleted| Some(usize::from(*deleted)),
                || about_key(schema, key),
            )
            .await
    }

    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
        call!(self, "get", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    TableBackend::get(self, schema, key).await
                },
                |found| Some(usize::from(found.is_some())),
                || about_key(schema, key),
            )
            .await
    }

    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        call!(self, "get_many", schema)
            .batch(keys.len())
            .run(
                async {
                    if keys.len() > MAX_GET_MANY {
                        return Err(Error::invalid(
                            "keys",
                            format!("{} keys, over the limit of {MAX_GET_MANY}", keys.len()),
                        ));
                    }
                    keys.iter().try_for_each(|key| schema.check_key(key))?;
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    TableBackend::get_many(self, schema, keys).await
                },
                |found| Some(found.iter().flatten().count()),
                || about_table(schema),
            )
            .await
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        call!(self, "contains", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    TableBackend::contains(self, schema, key).await
                },
                |found| Some(usize::from(*found)),
                || about_key(schema, key),
            )
            .await
    }

    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: &str,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        call!(self, "get_by_unique", schema)
            .run(
                async {
                    let position = schema.unique_position(index)?;
                    let components = schema.uniques()[position].components();
                    if components.len() != values.len() {
                        return Err(Error::invalid(
                            "key",
                            format!(
                                "unique index {index:?} has {} components, given {}",
                                components.len(),
                                values.len()
                            ),
                        ));
                    }
                    components
                        .iter()
                        .zip(values)
                        .try_for_each(|(def, value)| super::schema::check_value(def, value))?;
                    TableBackend::get_by_unique(self, schema, position, values).await
                },
                |found| Some(usize::from(found.is_some())),
                || format!("table {:?}, unique index {index:?}", schema.name()),
            )
            .await
    }

    async fn query(&self, schema: &TableSchema, query: &Query) -> Result<QueryPage> {
        call!(self, "query", schema)
            .run(
                run_query(self, schema, query),
                |page| Some(page.items.len()),
                || match &query.index {
                    Some(index) => format!("table {:?}, index {index:?}", schema.name()),
                    None => about_table(schema),
                },
            )
            .await
    }

    async fn scan(
        &self,
        schema: &TableSchema,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<QueryPage> {
        call!(self, "scan", schema)
            .run(
                async {
                    if !(1..=query::MAX_PAGE).contains(&limit) {
                        return Err(Error::invalid(
                            "limit",
                            format!("must be 1 to {}, not {limit}", query::MAX_PAGE),
                        ));
                    }
                    let print = scan_fingerprint(schema);
                    let after = cursor
                        .map(|c| query::decode_cursor(&print, c, schema, None))
                        .transpose()?;
                    let mut items =
                        TableBackend::scan(self, schema, after.as_ref().map(|p| &p.key), limit + 1)
                            .await?;
                    let more = items.len() > limit;
                    items.truncate(limit);
                    let next = more.then(|| items.last()).flatten().map(|last| {
                        query::encode_cursor(
                            &print,
                            &Position {
                                sort: None,
                                key: last.key.clone(),
                            },
                        )
                    });
                    Ok(QueryPage { items, next })
                },
                |page| Some(page.items.len()),
                || about_table(schema),
            )
            .await
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        call!(self, "count", schema)
            .run(
                TableBackend::count(self, schema),
                |_| None,
                || about_table(schema),
            )
            .await
    }
}

/// Refuses to create a table whose name differs from an existing one's only in letter case
/// (see [`same_table_name`]).
async fn refuse_case_twin<B: TableBackend>(backend: &B, schema: &TableSchema) -> Result<()> {
    let names = backend.table_names().await?;
    match names
        .iter()
        .find(|name| name.as_str() != schema.name() && same_table_name(name, schema.name()))
    {
        Some(twin) => Err(Error::invalid(
            "table name",
            format!(
                "{:?} and the existing table {twin:?} differ only in letter case, and are one \
                 name on every backend",
                schema.name()
            ),
        )),
        None => Ok(()),
    }
}

/// The key definitions of the indexes about to be added, with each index's name.
fn new_keys<'s>(
    schema: &'s TableSchema,
    missing: &MissingIndexes,
) -> Vec<(&'s str, Vec<&'s KeyDef>)> {
    missing
        .indexes
        .iter()
        .map(|&i| {
            let index = &schema.indexes()[i];
            let keys = std::iter::once(index.partition())
                .chain(index.sort())
                .collect();
            (index.name(), keys)
        })
        .chain(missing.uniques.iter().map(|&u| {
            let unique = &schema.uniques()[u];
            (unique.name(), unique.components().iter().collect())
        }))
        .collect()
}

/// Checks, before anything is created, that every record of the table fits the indexes
/// about to be added: a value of another type (or one no index can hold, such as empty text)
/// in one of their fields refuses the addition with [`Error::SchemaMismatch`] naming the
/// index and the first such record. A record that lacks the field is left out of the index,
/// as a write would leave it out; the keys of those that hold `null` in one are returned, for
/// [`clear_nulls`].
///
/// A record written with another type between this check and the backend's addition still
/// fails the addition (SQL, memory) or is left out of the index (DynamoDB, which skips what
/// does not fit a global secondary index's key).
async fn check_new_indexes<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    missing: &MissingIndexes,
) -> Result<Vec<RecordKey>> {
    let new = new_keys(schema, missing);
    let mut nulls = Vec::new();
    let mut refusals: Vec<Option<String>> = vec![None; new.len()];
    let mut after: Option<RecordKey> = None;
    loop {
        let page = backend.scan(schema, after.as_ref(), CHECK_PAGE).await?;
        for record in &page {
            let holds_null = new.iter().flat_map(|(_, keys)| keys).any(|key| {
                record
                    .document
                    .get(key.field())
                    .is_some_and(serde_json::Value::is_null)
            });
            if holds_null {
                nulls.push(record.key.clone());
            }
            for ((name, keys), refusal) in new.iter().zip(&mut refusals) {
                if refusal.is_some() {
                    continue;
                }
                let Some(why) = keys
                    .iter()
                    .find_map(|key| match key.read(&record.document) {
                        Ok(_) => None,
                        Err(Error::InvalidInput { why, .. }) => Some(Ok(why)),
                        Err(other) => Some(Err(other)),
                    })
                else {
                    continue;
                };
                *refusal = Some(format!(
                    "index {name:?} cannot be added: record {} holds a value it cannot index \
                     ({})",
                    describe_key(&record.key),
                    why?
                ));
            }
        }
        if page.len() < CHECK_PAGE {
            break;
        }
        after = page.last().map(|record| record.key.clone());
    }
    let differences: Vec<String> = refusals.into_iter().flatten().collect();
    if differences.is_empty() {
        Ok(nulls)
    } else {
        Err(Error::SchemaMismatch {
            table: schema.name().to_owned(),
            differences,
        })
    }
}

/// Rewrites each record of `keys` without the `null`s it holds in the fields of the indexes
/// about to be added, at its next version: as a write under the new schema would store it
/// (a `null` key is an absent key, see [`TableSchema::row`]), and as DynamoDB needs it to
/// build a global secondary index at all. Written through the table as it is (`live`), whose
/// layout has no column of the new indexes yet.
async fn clear_nulls<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    live: &super::TableShape,
    missing: &MissingIndexes,
    keys: Vec<RecordKey>,
) -> Result<()> {
    let current = TableSchema::from_shape(schema.name(), live)?;
    let fields: Vec<&str> = new_keys(schema, missing)
        .into_iter()
        .flat_map(|(_, keys)| keys)
        .map(KeyDef::field)
        .collect();
    for key in keys {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(record) = TableBackend::get(backend, &current, &key).await? else {
                break;
            };
            let mut document = record.document;
            let before = document.len();
            document.retain(|field, value| !(value.is_null() && fields.contains(&field.as_str())));
            if document.len() == before {
                break;
            }
            let row = current.row(document)?;
            match TableBackend::replace(backend, &current, &row, record.version).await {
                Ok(()) => break,
                // Written or deleted meanwhile: read it again.
                Err(Error::Conflict { .. } | Error::NotFound { .. })
                    if attempt < UPDATE_ATTEMPTS =>
                {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn describe_key(key: &RecordKey) -> String {
    match &key.sort {
        Some(sort) => format!("({:?}, {:?})", key.partition, sort),
        None => format!("{:?}", key.partition),
    }
}

fn scan_fingerprint(schema: &TableSchema) -> String {
    fingerprint(schema, &Query::table("scan").limit(1))
}

/// A pause before retrying a lost update, growing with the attempts and jittered so that
/// racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let mut jitter = [0u8; 1];
    let _ = getrandom::fill(&mut jitter);
    let base = u64::from(attempt.min(20));
    Duration::from_micros(base * 500 + u64::from(jitter[0]) * 8)
}

/// One page of a query: fetches one record more than the limit to know whether another page
/// follows, and, for a verified query on eventual indexes, re-reads the hits and fetches on
/// until the page is full again.
async fn run_query<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    query: &Query,
) -> Result<QueryPage> {
    let index = query::check(schema, query)?;
    let print = fingerprint(schema, query);
    let mut after = query
        .cursor
        .as_deref()
        .map(|c| query::decode_cursor(&print, c, schema, index))
        .transpose()?;
    let verify =
        query.verified && index.is_some() && backend.index_consistency() == Consistency::Eventual;
    let mut found: Vec<(Record, Position)> = Vec::new();
    loop {
        let want = query.limit + 1 - found.len();
        let request = IndexQuery {
            index,
            partition: &query.partition,
            sort: query.sort.as_ref(),
            order: query.order,
            after: after.as_ref(),
            fetch: want,
        };
        let batch = backend.query(schema, &request).await?;
        let exhausted = batch.len() < want;
        let mut batch = batch
            .into_iter()
            .map(|record| {
                let position = position(schema, &request, &record)?;
                Ok((record, position))
            })
            .collect::<Result<Vec<_>>>()?;
        after = batch.last().map(|(_, position)| position.clone());
        if verify {
            batch = still_matching(backend, schema, query, index, batch).await?;
        }
        found.extend(batch);
        if exhausted || found.len() > query.limit || !verify {
            break;
        }
    }
    let more = found.len() > query.limit;
    found.truncate(query.limit);
    let next = if more {
        found
            .last()
            .map(|(_, position)| query::encode_cursor(&print, position))
    } else {
        None
    };
    Ok(QueryPage {
        items: found.into_iter().map(|(record, _)| record).collect(),
        next,
    })
}

/// Where a returned record sits in the query's order, read from the record as the index
/// returned it.
fn position(schema: &TableSchema, request: &IndexQuery<'_>, record: &Record) -> Result<Position> {
    let sort = match request.index.and_then(|i| schema.indexes()[i].sort()) {
        Some(def) => Some(def.read(&record.document)?.ok_or_else(|| {
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

/// The hits whose current record still matches the query, as they are now.
async fn still_matching<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    query: &Query,
    index: Option<usize>,
    hits: Vec<(Record, Position)>,
) -> Result<Vec<(Record, Position)>> {
    let Some(index) = index.map(|i| &schema.indexes()[i]) else {
        return Ok(hits);
    };
    if hits.is_empty() {
        return Ok(hits);
    }
    let keys: Vec<RecordKey> = hits.iter().map(|(record, _)| record.key.clone()).collect();
    let current = backend.get_many(schema, &keys).await?;
    let mut kept = Vec::with_capacity(hits.len());
    for ((_, position), now) in hits.into_iter().zip(current) {
        let Some(now) = now else { continue };
        let partition = index.partition().read(&now.document)?;
        let sort = index
            .sort()
            .map(|def| def.read(&now.document))
            .transpose()?
            .flatten();
        let matches = partition.as_ref() == Some(&query.partition)
            && match (&query.sort, index.sort()) {
                (Some(condition), Some(_)) => sort.as_ref().is_some_and(|s| condition.matches(s)),
                (None, Some(_)) => sort.is_some(),
                (_, None) => true,
            };
        if matches {
            kept.push((now, position));
        }
    }
    Ok(kept)
}
