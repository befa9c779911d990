//! [`TableStore`] for every [`TableBackend`]: the checks, pages, cursors, verification and
//! retries of each call, its span and its error context, once for every backend.

use std::time::Duration;

use async_trait::async_trait;

use super::query::{self, fingerprint};
use super::{
    Change, Condition, Consistency, Document, IndexQuery, KeyValue, Order, Patch, Patched,
    Position, Query, QueryPage, Record, RecordKey, Returning, Row, TableSchema, TableStatus,
    TableStore, check_expected_version, next_version,
};
use crate::backend::TableBackend;
use crate::trace::{Call, call_span};
use crate::{Error, Result};

/// Most attempts of one [`TableStore::update`] before the conflict is returned.
const UPDATE_ATTEMPTS: u32 = 100;
/// Most keys in one `get_many`.
const MAX_GET_MANY: usize = 1000;

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
                        let current = TableBackend::get(self, schema, key)
                            .await?
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
                    let print = query::scan_fingerprint(schema);
                    let after = cursor
                        .map(|c| query::decode_cursor(&print, c, schema, None))
                        .transpose()?;
                    let mut items =
                        TableBackend::scan(self, schema, after.as_ref().map(|p| &p.key), limit + 1)
                            .await?;
                    // A scan's order is the backend's own, so only a repeat of the record the
                    // cursor names can be seen: the least that keeps `scan_stream` from looping.
                    if let Some(after) = &after
                        && items.iter().any(|record| record.key == after.key)
                    {
                        return Err(not_advancing(self.system()));
                    }
                    let more = items.len() > limit;
                    items.truncate(limit);
                    let next = match items.last() {
                        Some(last) if more => Some(query::encode_cursor(
                            &print,
                            &Position {
                                sort: None,
                                key: last.key.clone(),
                            },
                        )?),
                        _ => None,
                    };
                    Ok(QueryPage { items, next })
                },
                |page| Some(page.items.len()),
                || about_table(schema),
            )
            .await
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

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        call!(self, "count", schema)
            .run(
                TableBackend::count(self, schema),
                |_| None,
                || about_table(schema),
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
        .map(|c| query::decode_cursor(&print, c, schema, Some((query, index))))
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
            filter: query.filter.as_ref(),
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
        // Every record strictly after the one before it, the first after the cursor: the next
        // cursor then always moves forward, so paging a query always ends. A backend that
        // answers otherwise is refused rather than trusted (see `not_advancing`).
        let mut prev = after.as_ref();
        for (_, position) in &batch {
            if prev.is_some_and(|prev| !advances(index, query.order, prev, position)) {
                return Err(not_advancing(backend.system()));
            }
            prev = Some(position);
        }
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
    let next = match found.last() {
        Some((_, position)) if more => Some(query::encode_cursor(&print, position)?),
        _ => None,
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
        Some(def) => Some(def.read_stored(&record.document)?.ok_or_else(|| {
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
    let bytes_fields = super::expr::bytes_fields(schema);
    let keys: Vec<RecordKey> = hits.iter().map(|(record, _)| record.key.clone()).collect();
    let current = backend.get_many(schema, &keys).await?;
    let mut kept = Vec::with_capacity(hits.len());
    for ((_, position), now) in hits.into_iter().zip(current) {
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
            && partition.as_ref() == Some(&query.partition)
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
        fn system(&self) -> &'static str {
            "forgetful"
        }
    }

    #[async_trait]
    impl TableBackend for Forgetful {
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
        async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Vec<Record>> {
            let from_the_start = IndexQuery {
                after: None,
                ..*query
            };
            TableBackend::query(&self.0, schema, &from_the_start).await
        }
        async fn scan(
            &self,
            schema: &TableSchema,
            _after: Option<&RecordKey>,
            fetch: usize,
        ) -> Result<Vec<Record>> {
            TableBackend::scan(&self.0, schema, None, fetch).await
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
        let first = store.scan(&schema, 1, None).await?;
        let again = store.scan(&schema, 1, first.next.as_deref()).await;
        assert!(again.as_ref().is_err_and(not_advancing), "{again:?}");
        Ok(())
    }
}
