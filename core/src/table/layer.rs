//! [`TableStore`] for every [`TableBackend`]: the checks, pages, cursors, verification and
//! retries of each call, its span and its error context, once for every backend.

use std::time::Duration;

use async_trait::async_trait;

use super::query::{self, fingerprint};
use super::{
    Change, Condition, Consistency, Document, Fetched, IndexQuery, KeyDef, KeyValue, MAX_BATCH,
    MissingIndexes, Order, Patch, Patched, Position, Projection, Query, QueryPage, ReadOptions,
    Record, RecordKey, Returning, Row, Scan, StoredRecord, TableScan, TableSchema, TableStatus,
    TableStore, check_expected_version, next_version, same_table_name,
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
        let span = call_span!($backend.name(), system, $op, $schema.name());
        Call::new(span, system, $op)
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

use crate::time::now_seconds as now_secs;

/// `record`, unless it has expired: what every read returns.
fn alive(schema: &TableSchema, record: Option<Record>, now: f64) -> Option<Record> {
    record.filter(|record| !schema.is_expired(&record.document, now))
}

/// [`alive`] for a stored record: one of a table without a ttl is alive as it is, unparsed.
fn alive_stored(
    backend: &'static str,
    schema: &TableSchema,
    stored: Option<StoredRecord>,
    now: f64,
) -> Result<Option<StoredRecord>> {
    match stored {
        Some(stored) if schema.ttl().is_some() => {
            let record = stored.into_record(backend)?;
            Ok(alive(schema, Some(record), now).map(StoredRecord::from))
        }
        stored => Ok(stored),
    }
}

/// The keys of a `get_many`: at most [`MAX_GET_MANY`], each one of the table's.
fn check_get_many(schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
    if keys.len() > MAX_GET_MANY {
        return Err(Error::invalid(
            "keys",
            format!("{} keys, over the limit of {MAX_GET_MANY}", keys.len()),
        ));
    }
    keys.iter().try_for_each(|key| schema.check_key(key))
}

/// Most times a write retries after deleting expired records that stood in its way.
const EXPIRED_RETRIES: u32 = 3;

/// Deletes the expired records that hold `row`'s key (only when `key_too`: an insert) or one
/// of its unique values, each only if it is still expired when the database deletes it, so
/// that a record written meanwhile is left alone; `true` if any stood in the way. This is how
/// every backend treats an expired record as absent for a write without a read on the
/// ordinary path: only a write the database refused pays for it.
///
/// The delete is conditioned on the expiry, not on the version read: a racing writer may
/// have deleted the expired record and created a live one under the same key, which starts
/// again at version 1, the version an expired record created once holds too. A delete at
/// that version would remove the new record (32 racing inserts over one expired record then
/// all "won" on DynamoDB, each deleting the one before).
async fn clear_expired<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    row: &Row,
    key_too: bool,
) -> Result<bool> {
    let now = now_secs();
    let mut holders = Vec::new();
    if key_too && let Some(current) = TableBackend::get(backend, schema, row.key()).await? {
        holders.push(current);
    }
    for (position, values) in row.uniques().iter().enumerate() {
        if let Some(values) = values
            && let Some(holder) =
                TableBackend::get_by_unique(backend, schema, position, values).await?
            && &holder.key != row.key()
        {
            holders.push(holder);
        }
    }
    let mut cleared = false;
    for holder in holders {
        if !schema.is_expired(&holder.document, now) {
            continue;
        }
        cleared = true;
        let Some(field) = schema.ttl() else {
            continue;
        };
        let still_expired = Condition::le(super::Path::from(field), serde_json::json!(now));
        match TableBackend::delete_if(backend, schema, &holder.key, &still_expired).await {
            // Gone already, or written since: the retried write gets the database's answer.
            Ok(_) | Err(Error::NotFound { .. } | Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(cleared)
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
                    // Another client's indexes (or an earlier schema's): left alone, listed.
                    let undeclared = live.undeclared_indexes(schema);
                    if !undeclared.is_empty() {
                        self.forget_indexes(schema, &undeclared).await?;
                    }
                    let status = |added: Vec<String>| match (added.is_empty(), &undeclared) {
                        (_, undeclared) if !undeclared.is_empty() => {
                            TableStatus::UndeclaredIndexes {
                                added,
                                undeclared: undeclared.clone(),
                            }
                        }
                        (true, _) if created => TableStatus::Created,
                        (true, _) => TableStatus::Unchanged,
                        (false, _) => TableStatus::IndexesAdded(added),
                    };
                    if !created {
                        // Found, and it fits: adopted (or already ours), and listed from now on.
                        self.record_table(schema).await?;
                    }
                    if missing.is_empty() {
                        return Ok(status(Vec::new()));
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
                    Ok(status(names))
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

    fn eventual_reads(&self) -> Consistency {
        TableBackend::eventual_reads(self)
    }

    async fn insert(&self, schema: &TableSchema, document: Document) -> Result<Record> {
        call!(self, "insert", schema)
            .run(
                async {
                    let row = schema.row(document)?;
                    let mut attempt = 0;
                    loop {
                        match TableBackend::insert(self, schema, &row).await {
                            Err(Error::AlreadyExists { .. })
                                if schema.ttl().is_some()
                                    && attempt < EXPIRED_RETRIES
                                    && clear_expired(self, schema, &row, true).await? =>
                            {
                                attempt += 1;
                            }
                            result => {
                                result.map_err(|e| {
                                    e.during("insert", || about_key(schema, row.key()))
                                })?;
                                break;
                            }
                        }
                    }
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
                    let mut attempt = 0;
                    let version = loop {
                        match TableBackend::put(self, schema, &row).await {
                            Err(Error::AlreadyExists { .. })
                                if schema.ttl().is_some()
                                    && attempt < EXPIRED_RETRIES
                                    && clear_expired(self, schema, &row, false).await? =>
                            {
                                attempt += 1;
                            }
                            result => {
                                break result.map_err(|e| {
                                    e.during("put", || about_key(schema, row.key()))
                                })?;
                            }
                        }
                    };
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
                    check_expected_version(version)?;
                    // Refused before anything is sent: no backend then computes a version
                    // past the range (a raw overflow on SQL, a wrap on the others).
                    let next = next_version(version)?;
                    TableBackend::replace(self, schema, &row, version)
                        .await
                        .map_err(|e| e.during("replace", || about_key(schema, row.key())))?;
                    Ok(record(row, next))
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
                        let current = alive(
                            schema,
                            TableBackend::get(self, schema, key).await?,
                            now_secs(),
                        )
                        .ok_or(Error::NotFound { what: "record" })?;
                        let next = next_version(current.version)?;
                        let row = schema.row(change(current.document)?)?;
                        if row.key() != key {
                            return Err(Error::invalid(
                                "document",
                                "an update cannot change the record's key",
                            ));
                        }
                        match TableBackend::replace(self, schema, &row, current.version).await {
                            Ok(()) => return Ok(record(row, next)),
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
                    version.map(check_expected_version).transpose()?;
                    TableBackend::delete(self, schema, key, version).await
                },
                |deleted| Some(usize::from(*deleted)),
                || about_key(schema, key),
            )
            .await
    }

    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
        TableStore::get_stored(self, schema, key)
            .await?
            .map(|stored| stored.into_record(self.name()))
            .transpose()
    }

    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        let found = TableStore::get_many_stored(self, schema, keys).await?;
        super::parse_all(found, self.name())
    }

    async fn get_stored(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<StoredRecord>> {
        call!(self, "get", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    let found = TableBackend::get_stored(self, schema, key).await?;
                    alive_stored(self.name(), schema, found, now_secs())
                },
                |found| Some(usize::from(found.is_some())),
                || about_key(schema, key),
            )
            .await
    }

    async fn get_many_stored(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<StoredRecord>>> {
        call!(self, "get_many", schema)
            .batch(keys.len())
            .run(
                async {
                    check_get_many(schema, keys)?;
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let found = TableBackend::get_many_stored(self, schema, keys).await?;
                    let now = now_secs();
                    found
                        .into_iter()
                        .map(|stored| alive_stored(self.name(), schema, stored, now))
                        .collect()
                },
                |found| Some(found.iter().flatten().count()),
                || about_table(schema),
            )
            .await
    }

    async fn get_with(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        options: &ReadOptions,
    ) -> Result<Option<Record>> {
        call!(self, "get", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    if let Some(select) = &options.select {
                        select.check(schema)?;
                    }
                    let fields = fetched_whole(schema, None);
                    let fetch = options.select.as_ref().map(|s| s.fetching(&fields));
                    let found = self
                        .get_at(schema, key, fetch.as_ref(), options.consistency)
                        .await?;
                    Ok(
                        alive(schema, found, now_secs()).map(|record| match &options.select {
                            Some(select) => trimmed(schema, select, &fields, record, false),
                            None => record,
                        }),
                    )
                },
                |found| Some(usize::from(found.is_some())),
                || about_key(schema, key),
            )
            .await
    }

    async fn get_many_with(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        options: &ReadOptions,
    ) -> Result<Vec<Option<Record>>> {
        call!(self, "get_many", schema)
            .batch(keys.len())
            .run(
                async {
                    check_get_many(schema, keys)?;
                    if let Some(select) = &options.select {
                        select.check(schema)?;
                    }
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let fields = fetched_whole(schema, None);
                    let fetch = options.select.as_ref().map(|s| s.fetching(&fields));
                    let found = self
                        .get_many_at(schema, keys, fetch.as_ref(), options.consistency)
                        .await?;
                    let now = now_secs();
                    Ok(found
                        .into_iter()
                        .map(|record| {
                            alive(schema, record, now).map(|record| match &options.select {
                                Some(select) => trimmed(schema, select, &fields, record, false),
                                None => record,
                            })
                        })
                        .collect())
                },
                |found| Some(found.iter().flatten().count()),
                || about_table(schema),
            )
            .await
    }

    async fn get_selected(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        select: &Projection,
    ) -> Result<Option<Record>> {
        TableStore::get_with(self, schema, key, &ReadOptions::selecting(select)).await
    }

    async fn get_many_selected(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        select: &Projection,
    ) -> Result<Vec<Option<Record>>> {
        TableStore::get_many_with(self, schema, keys, &ReadOptions::selecting(select)).await
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        call!(self, "contains", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    if schema.ttl().is_some() {
                        // Whether the record is alive is in its document: read it.
                        let found = TableBackend::get(self, schema, key).await?;
                        return Ok(alive(schema, found, now_secs()).is_some());
                    }
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
                    let found = TableBackend::get_by_unique(self, schema, position, values).await?;
                    Ok(alive(schema, found, now_secs()))
                },
                |found| Some(usize::from(found.is_some())),
                || format!("table {:?}, unique index {index:?}", schema.name()),
            )
            .await
    }

    async fn query(&self, schema: &TableSchema, query: &Query) -> Result<QueryPage> {
        let page = query_page(self, schema, query, false).await?;
        Ok(QueryPage {
            items: into_records(self.name(), page.items)?,
            next: page.next,
            read: page.read,
        })
    }

    async fn query_stored(
        &self,
        schema: &TableSchema,
        query: &Query,
    ) -> Result<QueryPage<StoredRecord>> {
        query_page(self, schema, query, true).await
    }

    async fn scan(&self, schema: &TableSchema, scan: &Scan) -> Result<QueryPage> {
        let page = scan_page(self, schema, scan, false).await?;
        Ok(QueryPage {
            items: into_records(self.name(), page.items)?,
            next: page.next,
            read: page.read,
        })
    }

    async fn scan_stored(
        &self,
        schema: &TableSchema,
        scan: &Scan,
    ) -> Result<QueryPage<StoredRecord>> {
        scan_page(self, schema, scan, true).await
    }

    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<Patched> {
        call!(self, "patch", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    patch.check(schema)?;
                    if let Some(condition) = condition {
                        condition.check(schema)?;
                    }
                    let (version, document) =
                        TableBackend::patch(self, schema, key, patch, condition, returning).await?;
                    Ok(Patched {
                        key: key.clone(),
                        version,
                        document,
                    })
                },
                |_| Some(1),
                || about_key(schema, key),
            )
            .await
    }

    // Batches (issue 21, item 6).

    async fn put_many(
        &self,
        schema: &TableSchema,
        documents: Vec<Document>,
    ) -> Result<Vec<Record>> {
        call!(self, "put_many", schema)
            .batch(documents.len())
            .run(
                async {
                    check_batch("documents", documents.len())?;
                    let rows = documents
                        .into_iter()
                        .map(|document| schema.row(document))
                        .collect::<Result<Vec<_>>>()?;
                    distinct_keys("documents", rows.iter().map(Row::key))?;
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut attempt = 0;
                    let versions = loop {
                        match TableBackend::put_many(self, schema, &rows).await {
                            // An expired record holding one of the batch's unique values: as
                            // for `put`, deleted and the batch tried again.
                            Err(refused @ Error::AlreadyExists { .. })
                                if schema.ttl().is_some() && attempt < EXPIRED_RETRIES =>
                            {
                                attempt += 1;
                                let mut cleared = false;
                                for row in &rows {
                                    cleared |= clear_expired(self, schema, row, false).await?;
                                }
                                if !cleared {
                                    return Err(refused);
                                }
                            }
                            result => break result?,
                        }
                    };
                    if versions.len() != rows.len() {
                        return Err(Error::backend(
                            self.name(),
                            "a batch returned another number of versions than it wrote",
                        ));
                    }
                    Ok(rows
                        .into_iter()
                        .zip(versions)
                        .map(|(row, v)| record(row, v))
                        .collect())
                },
                |written| Some(written.len()),
                || about_table(schema),
            )
            .await
    }

    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
        call!(self, "delete_many", schema)
            .batch(keys.len())
            .run(
                async {
                    check_batch("keys", keys.len())?;
                    keys.iter().try_for_each(|key| schema.check_key(key))?;
                    distinct_keys("keys", keys.iter())?;
                    if keys.is_empty() {
                        return Ok(());
                    }
                    TableBackend::delete_many(self, schema, keys).await
                },
                |()| None,
                || about_table(schema),
            )
            .await
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        call!(self, "count", schema)
            .run(
                async {
                    if schema.ttl().is_none() {
                        return TableBackend::count(self, schema).await;
                    }
                    // Whether a record counts depends on its expiry, in its document: count
                    // the live ones page by page, as a scan would return them.
                    let now = now_secs();
                    let (mut live, mut from) = (0u64, None::<RecordKey>);
                    loop {
                        let all = TableScan::all(from.as_ref(), query::MAX_PAGE);
                        let batch = TableBackend::scan(self, schema, &all).await?.records;
                        let exhausted = batch.len() < query::MAX_PAGE;
                        live += batch
                            .iter()
                            .filter(|record| !schema.is_expired(&record.document, now))
                            .count() as u64;
                        match batch.last() {
                            Some(last) if !exhausted => from = Some(last.key.clone()),
                            _ => return Ok(live),
                        }
                    }
                },
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn table_size(&self, schema: &TableSchema) -> Result<super::TableSize> {
        call!(self, "table_size", schema)
            .run(
                TableBackend::table_size(self, schema),
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn count_query(&self, schema: &TableSchema, query: &Query) -> Result<u64> {
        call!(self, "count", schema)
            .run(
                async {
                    let index = query::check(schema, query)?;
                    let refuse = |what: &'static str, why: &str| Err(Error::invalid(what, why));
                    if query.cursor.is_some() {
                        return refuse("cursor", "a count covers the whole query: no cursor");
                    }
                    if query.read_budget.is_some() {
                        return refuse("read budget", "a count reads its whole range");
                    }
                    if query.verified {
                        return refuse(
                            "query",
                            "a count returns no hits to verify: count without verified()",
                        );
                    }
                    let filter = read_filter(schema, query.filter.as_ref(), now_secs());
                    let request = IndexQuery {
                        index,
                        partition: &query.partition,
                        sort: query.sort.as_ref(),
                        order: query.order,
                        after: None,
                        fetch: query::MAX_PAGE,
                        filter: filter.as_ref(),
                        budget: None,
                        consistency: query.consistency,
                    };
                    let count = TableBackend::count_query(self, schema, &request).await?;
                    tracing::Span::current().record("storekit.records_read", count);
                    Ok(count)
                },
                |_| None,
                || match &query.index {
                    Some(index) => format!("table {:?}, index {index:?}", schema.name()),
                    None => about_table(schema),
                },
            )
            .await
    }

    // Conditional writes (issue 21, item 5).

    async fn put_if(
        &self,
        schema: &TableSchema,
        document: Document,
        condition: &Condition,
    ) -> Result<Record> {
        call!(self, "put_if", schema)
            .run(
                put_if(self, schema, document, condition, false),
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn replace_if(
        &self,
        schema: &TableSchema,
        document: Document,
        condition: &Condition,
    ) -> Result<Record> {
        call!(self, "replace_if", schema)
            .run(
                put_if(self, schema, document, condition, true),
                |_| None,
                || about_table(schema),
            )
            .await
    }

    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool> {
        call!(self, "delete_if", schema)
            .run(
                async {
                    schema.check_key(key)?;
                    condition.check(schema)?;
                    TableBackend::delete_if(self, schema, key, condition).await
                },
                |deleted| Some(usize::from(*deleted)),
                || about_key(schema, key),
            )
            .await
    }
    // Transactions (issue 21, item 7).

    async fn transact(&self, transaction: &super::Transaction) -> Result<()> {
        let Some((schema, _)) = transaction.actions().first() else {
            return Ok(());
        };
        call!(self, "transact", schema)
            .run(
                transact(self, transaction),
                |()| Some(transaction.actions().len()),
                || about_table(schema),
            )
            .await
    }
}

/// The transaction's span is named after the table of its first action.
async fn transact<B: TableBackend>(backend: &B, transaction: &super::Transaction) -> Result<()> {
    let steps = transaction.checked()?;
    if steps.is_empty() {
        return Ok(());
    }
    TableBackend::transact(backend, &steps).await
}

/// `put_if` and `replace_if` (`existing`): the checks, then the backend's conditional write.
async fn put_if<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    document: Document,
    condition: &Condition,
    existing: bool,
) -> Result<Record> {
    let row = schema.row(document)?;
    condition.check(schema)?;
    let op = if existing { "replace_if" } else { "put_if" };
    let version = TableBackend::put_if(backend, schema, &row, condition, existing)
        .await
        .map_err(|e| e.during(op, || about_key(schema, row.key())))?;
    Ok(record(row, version))
}

/// At most [`MAX_BATCH`] items in one batch.
fn check_batch(what: &'static str, len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::invalid(
            what,
            format!("{len} in one batch, over the limit of {MAX_BATCH}"),
        ));
    }
    Ok(())
}

/// A key named twice in one batch has no one answer (DynamoDB refuses such a batch): refused
/// on every backend.
fn distinct_keys<'a>(what: &'static str, keys: impl Iterator<Item = &'a RecordKey>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            return Err(Error::invalid(
                what,
                format!("the key {key:?} comes twice in one batch"),
            ));
        }
    }
    Ok(())
}

/// What a page whose records do not move past its cursor is: the database answered out of the
/// query's order (or repeated a record), and a cursor made from that page would bring the
/// same records again, so that `query_stream` or `scan_stream` would never end.
fn not_advancing(backend: &'static str) -> Error {
    Error::backend(
        backend,
        "the database returned a record that does not come after the page's cursor in the \
         query's order; a cursor from this page would repeat records",
    )
}

/// Whether `next` comes strictly after `prev` in the order of a query on the table (`index`
/// `None`) or on a query index.
///
/// A table query orders by the record's key, which every backend orders the same way. An
/// index query orders by the index's sort key, and records that tie on it come in the
/// backend's own order (DynamoDB's is internal to the GSI), so a tie only has to be another
/// record.
fn advances(index: Option<usize>, order: Order, prev: &Position, next: &Position) -> bool {
    let forward = |ordering: std::cmp::Ordering| match order {
        Order::Ascending => ordering.is_gt(),
        Order::Descending => ordering.is_lt(),
    };
    match index {
        None => forward(next.key.cmp(&prev.key)),
        Some(_) => match next.sort.cmp(&prev.sort) {
            std::cmp::Ordering::Equal => next.key != prev.key,
            ordering => forward(ordering),
        },
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
        let page = backend
            .scan(schema, &TableScan::all(after.as_ref(), CHECK_PAGE))
            .await?
            .records;
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

/// A pause before retrying a lost update, growing with the attempts and jittered so that
/// racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let mut jitter = [0u8; 1];
    let _ = getrandom::fill(&mut jitter);
    let base = u64::from(attempt.min(20));
    Duration::from_micros(base * 500 + u64::from(jitter[0]) * 8)
}

/// A record found for a page: where it sits in the order, and how many records had been read
/// from the page's cursor up to and including it, where the backend says.
struct Found<R = Record> {
    record: R,
    position: Position,
    through: Option<u64>,
}

/// Refuses a backend's answer that breaks [`Fetched`]'s contract (more records than asked, a
/// read over the budget, a cut on a full answer), rather than paging on it.
fn check_fetched<R>(
    backend: &'static str,
    fetched: &Fetched<R>,
    want: usize,
    budget: Option<u64>,
) -> Result<()> {
    let broken = if fetched.records.len() > want {
        Some("more records than asked")
    } else if budget.is_some_and(|budget| fetched.read > budget) {
        Some("more records read than the read budget allows")
    } else if fetched.cut.is_some() && fetched.records.len() == want {
        Some("a cut read that had found every record asked")
    } else if fetched
        .read_through
        .as_ref()
        .is_some_and(|through| through.len() != fetched.records.len())
    {
        Some("a read count per record for another number of records")
    } else {
        None
    };
    match broken {
        Some(why) => Err(Error::backend(
            backend,
            format!("the database returned {why}"),
        )),
        None => Ok(()),
    }
}

/// The records of one answer, each with its position and its read count from the page's
/// cursor (`read_before` read by the page's earlier answers).
fn found_in<R>(
    fetched: Fetched<R>,
    read_before: u64,
    mut position: impl FnMut(&R) -> Result<Position>,
) -> Result<Vec<Found<R>>> {
    let through = fetched.read_through;
    fetched
        .records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            Ok(Found {
                position: position(&record)?,
                through: through.as_ref().map(|t| read_before + t[i]),
                record,
            })
        })
        .collect()
}

/// Cuts the page found to `limit` (one more was fetched to know whether another page
/// follows) and makes its cursor: after its last record when more follow, or after the last
/// record read where the read budget ran out (`cut`). `read` is what the page's answers read
/// in all; a page that had more counts only up to its last record, where the database says.
fn finish_page<R>(
    mut found: Vec<Found<R>>,
    limit: usize,
    cut: Option<Position>,
    read: u64,
    print: &[u8; 32],
) -> Result<QueryPage<R>> {
    let (end, read) = if found.len() > limit {
        found.truncate(limit);
        let last = found.last().ok_or(Error::NotFound { what: "record" })?;
        (Some(last.position.clone()), last.through.unwrap_or(read))
    } else {
        (cut, read)
    };
    tracing::Span::current().record("storekit.records_read", read);
    Ok(QueryPage {
        items: found.into_iter().map(|found| found.record).collect(),
        next: end
            .map(|position| query::encode_cursor(print, &position))
            .transpose()?,
        read,
    })
}

/// The filter a read runs: the caller's, and that the record has not expired, so that
/// expired records are left out by the database and pages stay full.
fn read_filter(schema: &TableSchema, filter: Option<&Condition>, now: f64) -> Option<Condition> {
    match (schema.live_condition(now), filter) {
        (Some(live), Some(filter)) => Some(filter.clone().and(live)),
        (live, filter) => live.or_else(|| filter.cloned()),
    }
}

/// The fields a projected read fetches whole besides what the caller selected: the table's
/// keys (every record's key), the queried index's keys (a page's position), and the ttl field
/// (whether a record read by key is alive).
fn fetched_whole(schema: &TableSchema, index: Option<usize>) -> Vec<&str> {
    let index = index.map(|i| &schema.indexes()[i]);
    [
        Some(schema.partition()),
        schema.sort(),
        index.map(|i| i.partition()),
        index.and_then(|i| i.sort()),
    ]
    .into_iter()
    .flatten()
    .map(KeyDef::field)
    .chain(schema.ttl())
    .collect()
}

/// A record read through `select.fetching(fields)`, trimmed to what the caller selected
/// (`whole`: its document was read whole, not projected).
fn trimmed(
    schema: &TableSchema,
    select: &Projection,
    fields: &[&str],
    mut record: Record,
    whole: bool,
) -> Record {
    record.document = select.trim(schema, fields, record.document, whole);
    record
}

/// One page of a query: fetches one record more than the limit to know whether another page
/// follows, and, for a verified query on eventual indexes, re-reads the hits and fetches on
/// until the page is full again, within the read budget.
/// [`run_query`] in the query's span.
async fn query_page<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    query: &Query,
    typed: bool,
) -> Result<QueryPage<StoredRecord>> {
    call!(backend, "query", schema)
        .run(
            run_query(backend, schema, query, typed),
            |page| Some(page.items.len()),
            || match &query.index {
                Some(index) => format!("table {:?}, index {index:?}", schema.name()),
                None => about_table(schema),
            },
        )
        .await
}

/// A backend's answer of parsed records, as the query loop pages through them.
fn stored(fetched: Fetched) -> Result<Fetched<StoredRecord>> {
    fetched.try_map(|record| Ok(StoredRecord::from(record)))
}

/// Stored records with their documents parsed.
fn into_records(backend: &'static str, stored: Vec<StoredRecord>) -> Result<Vec<Record>> {
    stored
        .into_iter()
        .map(|record| record.into_record(backend))
        .collect()
}

/// One page of `query`. `typed`: for a typed read, which takes the documents as the backend
/// holds them ([`TableBackend::query_stored`]) wherever the page needs no whole document
/// here (no selection, no verification).
async fn run_query<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    query: &Query,
    typed: bool,
) -> Result<QueryPage<StoredRecord>> {
    let index = query::check(schema, query)?;
    if let Some(select) = &query.select {
        select.check(schema)?;
    }
    // A partial index: what it holds of each record, unless the query asks for whole records.
    let held = index.and_then(|i| schema.index_fields(i));
    let whole = held.is_some() && query.whole;
    // Whole records from a backend whose index answers hold only the index's fields: read by
    // key after the page is cut (see `whole_records`), and selected from then.
    let reread = whole && backend.queries_index_projections();
    let fields = fetched_whole(schema, index);
    let fetch = query
        .select
        .as_ref()
        .filter(|_| !reread)
        .map(|select| select.fetching(&fields));
    let print = fingerprint(schema, query);
    let mut after = query
        .cursor
        .as_deref()
        .map(|c| query::decode_cursor(&print, c, schema, Some((query, index))))
        .transpose()?;
    let verify =
        query.verified && index.is_some() && backend.index_consistency() == Consistency::Eventual;
    let now = now_secs();
    let filter = read_filter(schema, query.filter.as_ref(), now);
    let mut found: Vec<Found<StoredRecord>> = Vec::new();
    let (mut read, mut cut) = (0u64, None);
    loop {
        let want = query.limit + 1 - found.len();
        let budget = query.read_budget.map(|budget| budget.saturating_sub(read));
        if budget == Some(0) {
            // Spent by answers whose hits verification dropped: the page ends where they did.
            cut = after.clone();
            break;
        }
        let request = IndexQuery {
            index,
            partition: &query.partition,
            sort: query.sort.as_ref(),
            order: query.order,
            after: after.as_ref(),
            fetch: want,
            filter: filter.as_ref(),
            budget,
            consistency: query.consistency,
        };
        let fetched = match &fetch {
            Some(fetch) => stored(backend.query_selected(schema, &request, fetch).await?)?,
            None if typed && !verify => backend.query_stored(schema, &request).await?,
            None => stored(backend.query(schema, &request).await?)?,
        };
        check_fetched(backend.name(), &fetched, want, budget)?;
        let exhausted = fetched.records.len() < want && fetched.cut.is_none();
        let answer_read = fetched.read;
        let cut_at = fetched
            .cut
            .as_ref()
            .map(|document| request.position_of_document(schema, document, backend.name()))
            .transpose()?;
        let mut batch = found_in(fetched, read, |record| {
            request.position_of_record(schema, record, backend.name())
        })?;
        read += answer_read;
        // Every record strictly after the one before it, the first after the cursor, and a
        // cut after them all (or on the last, when the last record read was returned): the
        // next cursor then always moves forward, so paging a query always ends. A backend
        // that answers otherwise is refused rather than trusted (see `not_advancing`).
        let mut prev = after.as_ref();
        let last = batch.last().map(|f| &f.position);
        let cut_beyond = cut_at.as_ref().filter(|&cut| Some(cut) != last);
        for position in batch.iter().map(|f| &f.position).chain(cut_beyond) {
            if prev.is_some_and(|prev| !advances(index, query.order, prev, position)) {
                return Err(not_advancing(backend.name()));
            }
            prev = Some(position);
        }
        after = prev.cloned();
        if verify {
            batch = still_matching(backend, schema, query, index, batch, now).await?;
        }
        found.extend(batch);
        if cut_at.is_some() {
            cut = cut_at;
            break;
        }
        if exhausted || found.len() > query.limit || !verify {
            break;
        }
    }
    let reread_after = reread && !verify;
    let select = query.select.as_ref().filter(|_| !reread_after);
    let held = held.as_ref().filter(|_| !whole);
    if select.is_some() || held.is_some() {
        found = found
            .into_iter()
            .map(|f| {
                let mut record = f.record.into_record(backend.name())?;
                if let Some(select) = select {
                    // A verified page holds the records as re-read whole.
                    record = trimmed(schema, select, &fields, record, verify);
                }
                if let Some(held) = held {
                    // What the index holds, as DynamoDB answers from it: no version, which it
                    // does not hold either.
                    record
                        .document
                        .retain(|field, _| held.contains(&field.as_str()));
                    record.version = 0;
                }
                Ok(Found {
                    record: StoredRecord::from(record),
                    ..f
                })
            })
            .collect::<Result<_>>()?;
    }
    let mut page = finish_page(found, query.limit, cut, read, &print)?;
    if reread_after {
        let hits = into_records(backend.name(), std::mem::take(&mut page.items))?;
        let mut records = whole_records(backend, schema, hits, now).await?;
        if let Some(select) = &query.select {
            records = records
                .into_iter()
                .map(|record| trimmed(schema, select, &fields, record, true))
                .collect();
        }
        page.items = records.into_iter().map(StoredRecord::from).collect();
    }
    Ok(page)
}

/// The whole records of a page's index hits, read by key (consistently, one `BatchGetItem`
/// per 100 on DynamoDB): a hit whose record was deleted, or expired, since is left out.
async fn whole_records<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    hits: Vec<Record>,
    at: f64,
) -> Result<Vec<Record>> {
    if hits.is_empty() {
        return Ok(hits);
    }
    let keys: Vec<RecordKey> = hits.into_iter().map(|hit| hit.key).collect();
    Ok(backend
        .get_many(schema, &keys)
        .await?
        .into_iter()
        .flatten()
        .filter(|record| !schema.is_expired(&record.document, at))
        .collect())
}

/// One page of a scan, as [`run_query`] makes one of a query (without verification: a scan
/// reads the table, consistently).
/// [`run_scan`] in the scan's span.
async fn scan_page<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    scan: &Scan,
    typed: bool,
) -> Result<QueryPage<StoredRecord>> {
    call!(backend, "scan", schema)
        .run(
            run_scan(backend, schema, scan, typed),
            |page| Some(page.items.len()),
            || about_table(schema),
        )
        .await
}

/// One page of `scan`; `typed` as for [`run_query`].
async fn run_scan<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    scan: &Scan,
    typed: bool,
) -> Result<QueryPage<StoredRecord>> {
    scan.check(schema)?;
    let print = query::scan_fingerprint(schema, scan.filter.as_ref(), scan.segment.as_ref());
    let after = scan
        .cursor
        .as_deref()
        .map(|c| query::decode_cursor(&print, c, schema, None))
        .transpose()?
        .map(|position| position.key);
    let filter = read_filter(schema, scan.filter.as_ref(), now_secs());
    let want = scan.limit + 1;
    let request = TableScan {
        after: after.as_ref(),
        fetch: want,
        filter: filter.as_ref(),
        budget: scan.read_budget,
        consistency: scan.consistency,
        segment: scan.segment,
    };
    let fetched = if typed {
        backend.scan_stored(schema, &request).await?
    } else {
        stored(TableBackend::scan(backend, schema, &request).await?)?
    };
    check_fetched(backend.name(), &fetched, want, scan.read_budget)?;
    let cut = fetched
        .cut
        .as_ref()
        .map(|document| {
            Ok::<_, Error>(Position {
                sort: None,
                key: schema.key_of(document)?,
            })
        })
        .transpose()?;
    let read = fetched.read;
    let found = found_in(fetched, 0, |record| {
        Ok(Position {
            sort: None,
            key: record.key.clone(),
        })
    })?;
    // A scan's order is the backend's own, so only a repeat of the record the cursor names can
    // be seen: the least that keeps `scan_stream` from looping.
    if let Some(after) = &after
        && (found.iter().any(|f| &f.position.key == after)
            || cut.as_ref().is_some_and(|cut| &cut.key == after))
    {
        return Err(not_advancing(backend.name()));
    }
    finish_page(found, scan.limit, cut, read, &print)
}

/// The hits whose current record still matches the query, as they are now.
async fn still_matching<B: TableBackend>(
    backend: &B,
    schema: &TableSchema,
    query: &Query,
    index: Option<usize>,
    hits: Vec<Found<StoredRecord>>,
    at: f64,
) -> Result<Vec<Found<StoredRecord>>> {
    let Some(index) = index.map(|i| &schema.indexes()[i]) else {
        return Ok(hits);
    };
    if hits.is_empty() {
        return Ok(hits);
    }
    let bytes_fields = super::expr::bytes_fields(schema);
    let keys: Vec<RecordKey> = hits.iter().map(|hit| hit.record.key.clone()).collect();
    let current = backend.get_many(schema, &keys).await?;
    let mut kept = Vec::with_capacity(hits.len());
    for (hit, now) in hits.into_iter().zip(current) {
        let Some(now) = now else { continue };
        let partition = index.partition().read_stored(&now.document)?;
        let sort = index
            .sort()
            .map(|def| def.read_stored(&now.document))
            .transpose()?
            .flatten();
        let meets_filter = query
            .filter
            .as_ref()
            .is_none_or(|filter| filter.matches(&now.document, &bytes_fields));
        let matches = meets_filter
            && !schema.is_expired(&now.document, at)
            && partition.as_ref() == Some(&query.partition)
            && match (&query.sort, index.sort()) {
                (Some(condition), Some(_)) => sort.as_ref().is_some_and(|s| condition.matches(s)),
                (None, Some(_)) => sort.is_some(),
                (_, None) => true,
            };
        if matches {
            kept.push(Found {
                record: StoredRecord::from(now),
                ..hit
            });
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt as _;
    use serde_json::json;

    use super::*;
    use crate::MemoryStore;
    use crate::backend::Backend;
    use crate::table::{KeyDef, MissingIndexes, TableShape, query_stream};

    /// The memory store, except that its queries and scans forget where the last page ended:
    /// a backend whose pages never move past their cursor.
    #[derive(Debug, Default)]
    struct Forgetful(MemoryStore);

    impl Backend for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }

        fn system(&self) -> &'static str {
            "forgetful"
        }
    }

    #[async_trait]
    impl TableBackend for Forgetful {
        async fn table_names(&self) -> Result<Vec<String>> {
            self.0.table_names().await
        }
        async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
            self.0.describe_table(schema).await
        }
        async fn create_table(&self, schema: &TableSchema) -> Result<()> {
            self.0.create_table(schema).await
        }
        async fn add_indexes(&self, schema: &TableSchema, missing: &MissingIndexes) -> Result<()> {
            self.0.add_indexes(schema, missing).await
        }
        async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
            TableBackend::drop_table(&self.0, schema).await
        }
        async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()> {
            TableBackend::insert(&self.0, schema, row).await
        }
        async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64> {
            TableBackend::put(&self.0, schema, row).await
        }
        async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()> {
            TableBackend::replace(&self.0, schema, row, expected).await
        }
        async fn delete(
            &self,
            schema: &TableSchema,
            key: &RecordKey,
            expected: Option<u64>,
        ) -> Result<bool> {
            TableBackend::delete(&self.0, schema, key, expected).await
        }
        async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
            TableBackend::get(&self.0, schema, key).await
        }
        async fn get_many(
            &self,
            schema: &TableSchema,
            keys: &[RecordKey],
        ) -> Result<Vec<Option<Record>>> {
            TableBackend::get_many(&self.0, schema, keys).await
        }
        async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
            TableBackend::contains(&self.0, schema, key).await
        }
        async fn get_by_unique(
            &self,
            schema: &TableSchema,
            index: usize,
            values: &[KeyValue],
        ) -> Result<Option<Record>> {
            TableBackend::get_by_unique(&self.0, schema, index, values).await
        }
        async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Fetched> {
            let from_the_start = IndexQuery {
                after: None,
                ..*query
            };
            TableBackend::query(&self.0, schema, &from_the_start).await
        }
        async fn scan(&self, schema: &TableSchema, scan: &TableScan<'_>) -> Result<Fetched> {
            let from_the_start = TableScan {
                after: None,
                ..*scan
            };
            TableBackend::scan(&self.0, schema, &from_the_start).await
        }
        async fn count(&self, schema: &TableSchema) -> Result<u64> {
            TableBackend::count(&self.0, schema).await
        }
        async fn patch(
            &self,
            schema: &TableSchema,
            key: &RecordKey,
            patch: &Patch,
            condition: Option<&Condition>,
            returning: Returning,
        ) -> Result<(u64, Option<Document>)> {
            TableBackend::patch(&self.0, schema, key, patch, condition, returning).await
        }
        async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
            TableBackend::put_many(&self.0, schema, rows).await
        }
        async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
            TableBackend::delete_many(&self.0, schema, keys).await
        }
        async fn put_if(
            &self,
            schema: &TableSchema,
            row: &Row,
            condition: &Condition,
            existing: bool,
        ) -> Result<u64> {
            TableBackend::put_if(&self.0, schema, row, condition, existing).await
        }
        async fn delete_if(
            &self,
            schema: &TableSchema,
            key: &RecordKey,
            condition: &Condition,
        ) -> Result<bool> {
            TableBackend::delete_if(&self.0, schema, key, condition).await
        }
        async fn transact(&self, steps: &[crate::table::transact::Step]) -> Result<()> {
            TableBackend::transact(&self.0, steps).await
        }
    }

    #[tokio::test]
    async fn a_page_that_does_not_move_past_its_cursor_is_an_error_not_a_loop() -> Result<()> {
        let backend = std::sync::Arc::new(Forgetful::default());
        let store: &dyn TableStore = backend.as_ref();
        let schema = TableSchema::builder("things", KeyDef::text("p"))
            .sort_key(KeyDef::int("s"))
            .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
            .build()?;
        store.ensure_table(&schema).await?;
        for s in 0..3 {
            let document = json!({"p": "a", "s": s, "g": "g", "n": 1});
            let serde_json::Value::Object(document) = document else {
                unreachable!("an object")
            };
            store.insert(&schema, document).await?;
        }
        let not_advancing = |e: &Error| {
            matches!(
                e,
                Error::Backend {
                    backend: "forgetful",
                    ..
                }
            )
        };
        for query in [Query::table("a"), Query::index("by-g", "g")] {
            let first = store.query(&schema, &query.clone().limit(1)).await?;
            let next = first.next.ok_or(Error::NotFound { what: "cursor" })?;
            let again = store
                .query(&schema, &query.clone().limit(1).after(next))
                .await;
            assert!(again.as_ref().is_err_and(not_advancing), "{again:?}");
            let all: Result<Vec<Record>> =
                query_stream(backend.clone(), schema.clone(), query.limit(1))
                    .try_collect()
                    .await;
            assert!(all.as_ref().is_err_and(not_advancing), "{all:?}");
        }
        let first = store.scan(&schema, &Scan::new().limit(1)).await?;
        let next = first.next.ok_or(Error::NotFound { what: "cursor" })?;
        let again = store.scan(&schema, &Scan::new().limit(1).after(next)).await;
        assert!(again.as_ref().is_err_and(not_advancing), "{again:?}");
        Ok(())
    }
}
