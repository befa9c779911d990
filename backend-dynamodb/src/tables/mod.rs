//! [`TableBackend`] on DynamoDB: one DynamoDB table per declared table, laid out so that a table
//! made by Terraform and filled by another client (a PynamoDB model) can be adopted as it is,
//! and stays readable by that client.
//!
//! # Layout
//!
//! - **`{prefix}{name}`** per declared table (**`{name}`** alone for an exact-named one,
//!   `TableSchemaBuilder::exact_name`, which any store with any prefix opens as that one
//!   table, each store keeping its own catalog item for it): its key attributes are the record's own fields
//!   (text `S`, integer and float `N`, bytes `B`), every other document field is a native
//!   attribute (see [`item`]), and the version is the number `_storekit_version` (or the
//!   attribute the schema names, `TableSchemaBuilder::version_attribute`). One global
//!   secondary index per query index, named as declared and projecting what it declares
//!   (`ALL`, `KEYS_ONLY`, `INCLUDE`); billed and tagged as the schema declares. Global
//!   secondary indexes the schema does not declare are left alone.
//! - **`{prefix}storekit_unique`**, shared by every table of the store, with the store's usual
//!   `pk`/`sk` string keys. A *marker* item per value held in a unique index:
//!   `pk = {table}#{index}#{values}` (each value typed and length-prefixed, see [`unique`]),
//!   `sk = UNIQUE`, and `holder`, the key of the record holding it. A *catalog* item per table:
//!   `pk = {table}`, `sk = CATALOG`, and `shape`, the [`TableShape`] storekit built, which is
//!   where unique indexes (which DynamoDB has no notion of) and the declared type of numeric
//!   keys (`N` is both int and float) are kept. A table without a catalog item (made outside
//!   storekit) has no unique index until `ensure_table` builds them from its records.
//!
//! # Requests
//!
//! | call | requests |
//! |---|---|
//! | `insert` | PutItem `attribute_not_exists`; with unique values, one TransactWriteItems of the record and its markers |
//! | `put` | as `insert`; if the record exists, the refused write returns it and a second write is conditioned on its version, moving the markers whose values change |
//! | `replace` | PutItem conditioned on the version and, with unique indexes, on still holding the new unique values; otherwise the refused write returns the old item and one TransactWriteItems moves the markers |
//! | `delete` | DeleteItem (conditioned on the version, if given); with unique indexes, GetItem and then one TransactWriteItems with the markers (DeleteItem if the record holds none) |
//! | `put_if`, `replace_if` | as `put`, the caller's condition joined to the record's own; a refusal whose returned item fails the condition is the answer, so a refused create-only `put_if` is one PutItem. `replace_if` first reads the record (GetItem), since it must never create one |
//! | `delete_if` | DeleteItem with the caller's condition; with unique indexes, as `delete`, conditioned on the version read and the caller's condition |
//! | `get`, `contains` | GetItem, consistent (`get_with` an eventual `ReadOptions`: `ConsistentRead=false`) |
//! | `get_many` | BatchGetItem per 100 distinct keys, consistent (or not, as `get_many_with` asks) |
//! | `get_by_unique` | GetItem of the marker, GetItem of the record, both consistent |
//! | `query` | Query per 1 MB page, consistent on the table unless the query asks eventual, eventual on an index; on a partial index (`KEYS_ONLY`, `INCLUDE`) what it projects, or with `whole_records` the page's hits then read by key, one consistent BatchGetItem per 100 |
//! | `count_query` | Query with `Select=COUNT` per 1 MB page of the range, consistency as for `query` |
//! | `scan`, `count` | Scan per 1 MB page, consistent unless the scan asks eventual, `Segment`/`TotalSegments` for a segment (`count` with `Select=COUNT`) |
//! | `import_records` (`storekit copy`) | per record, `put`'s write at the version given rather than the next one |
//!
//! Conflicts are read from the database's answer: a refused condition returns the item as it
//! was (`ReturnValuesOnConditionCheckFailure`), from which the version in a `Conflict`, or the
//! next attempt of a `put`, is taken. A marker held by a record that no longer holds its value
//! (left by another client's write) is removed when a write meets it, in a transaction
//! conditioned on that record as it was read.

mod batch;
mod filter;
pub(crate) mod item;
mod patch;
mod read;
mod schema;
mod transact;
mod unique;
pub(crate) mod write;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit_core::Result;
use storekit_core::backend::TableBackend;
use storekit_core::table::{
    Condition as DocCondition, Consistency, Document, Fetched, IndexQuery, KeyValue,
    MissingIndexes, Patch, Projection, Record, RecordKey, Returning, Row, TableScan, TableSchema,
    TableShape,
};
use storekit_core::transfer::TableTransferBackend;

use crate::DynamoDbStore;
use crate::count::Counted as _;
use crate::txn::Condition;

/// The name, after the store's prefix, of the table of unique-value markers and catalogs.
pub(crate) const UNIQUE_TABLE: &str = "storekit_unique";

/// The DynamoDB table of a declared table: `{prefix}{name}`, or the name alone for an
/// exact-named table. Core refuses the names of the store's own tables (`users`, `kv`,
/// [`UNIQUE_TABLE`]) in every schema, so none can land on them (a store's own tables always
/// carry its prefix, which may not be empty, so an exact name cannot be one of them either).
pub(crate) fn table_name(prefix: &str, schema: &TableSchema) -> String {
    schema.stored_name(prefix)
}

impl DynamoDbStore {
    /// The DynamoDB table of a declared table in this store.
    fn table_name(&self, schema: &TableSchema) -> String {
        table_name(self.config.table_prefix(), schema)
    }
}

/// An expression's placeholders, numbered as they are added, so that no attribute name can
/// collide with one of DynamoDB's reserved words.
#[derive(Debug, Default)]
struct Placeholders {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Placeholders {
    /// The placeholder of an attribute name (the same one each time it is named).
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The placeholder of a value.
    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// A condition of `expression` with these placeholders.
    fn condition(self, expression: String) -> Condition {
        let condition = self
            .names
            .iter()
            .fold(Condition::new(expression), |c, (p, a)| c.name(p, a));
        self.values
            .into_iter()
            .fold(condition, |c, (p, v)| c.value(&p, v))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// No record has this key.
fn absent(schema: &TableSchema) -> Condition {
    let mut p = Placeholders::default();
    let expression = format!(
        "attribute_not_exists({})",
        p.name(schema.partition().field())
    );
    p.condition(expression)
}

/// The record exists at `version`, 0 standing for an item written without one.
fn at_version(schema: &TableSchema, version: u64) -> Condition {
    let mut p = Placeholders::default();
    let expression = version_clause(&mut p, schema, version);
    p.condition(expression)
}

/// The record is as a conditional write saw it (absent, or at `version`) and the caller's
/// condition holds on it: a refusal of this condition with the record still so means the
/// caller's condition failed.
fn guarded(schema: &TableSchema, version: Option<u64>, guard: &DocCondition) -> Result<Condition> {
    let mut p = Placeholders::default();
    let base = match version {
        Some(version) => version_clause(&mut p, schema, version),
        None => format!(
            "attribute_not_exists({})",
            p.name(schema.partition().field())
        ),
    };
    let expression = format!("{base} AND ({})", filter::render(guard, &mut p)?);
    Ok(p.condition(expression))
}

fn version_clause(p: &mut Placeholders, schema: &TableSchema, version: u64) -> String {
    let v = p.name(item::version_attribute(schema));
    if version == 0 {
        let pk = p.name(schema.partition().field());
        format!("attribute_exists({pk}) AND attribute_not_exists({v})")
    } else {
        let value = p.value(item::version_value(version));
        format!("{v} = {value}")
    }
}

impl DynamoDbStore {
    /// Records a table `ensure_table` found matching its schema in the store's catalog
    /// (`{prefix}storekit_unique`), unless it is there already: a table made outside
    /// storekit (Terraform, another client) is then listed by `storekit stats`, copied by
    /// `storekit copy`, checked by `schema check` and exported by `schema --from`, as the
    /// tables storekit created are. The item is marked adopted, so that the store's
    /// `drop_tables` leaves an exact-named one (which the store did not make, and whose data
    /// is someone else's) where it is. The marker table is created first if the store has
    /// none.
    async fn record_adopted(&self, schema: &TableSchema) -> Result<()> {
        if self.read_catalog(schema).await?.is_some() {
            return Ok(());
        }
        self.ensure_unique_table().await?;
        tracing::info!(
            table = self.table_name(schema),
            "recorded an adopted dynamodb table in the catalog"
        );
        self.write_catalog_item(schema, true).await
    }
}

#[async_trait]
impl TableBackend for DynamoDbStore {
    fn index_consistency(&self) -> Consistency {
        // Global secondary indexes cannot be read consistently.
        Consistency::Eventual
    }

    async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        // Checked here, which `ensure_table` calls first: the same limit as on PostgreSQL,
        // so a prefix that fits one backend fits all.
        schema.check_stored_name(self.config.table_prefix())?;
        let Some((shape, mut differences)) = self.describe_checked(schema).await? else {
            return Ok(None);
        };
        if differences.is_empty() {
            return Ok(Some(shape));
        }
        // Billing and tags are DynamoDB's, compared here; the rest as core compares it, so
        // that one error lists every difference.
        if let Err(storekit_core::Error::SchemaMismatch {
            differences: more, ..
        }) = shape.compare(schema)
        {
            differences.extend(more);
        }
        Err(storekit_core::Error::SchemaMismatch {
            table: schema.name().to_owned(),
            differences,
        })
    }

    fn queries_index_projections(&self) -> bool {
        // A Query on a global secondary index returns what it projects.
        true
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        let prefix = self.config.table_prefix();
        let mut names: Vec<String> = self
            .tables_under_prefix()
            .await?
            .into_iter()
            .filter_map(|name| name.strip_prefix(prefix).map(str::to_owned))
            .collect();
        // Exact-named tables carry no prefix: the catalog knows the ones this store made.
        for (name, shape) in self.catalogs().await? {
            if shape.exact_name && !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        self.create(schema).await
    }

    async fn add_indexes(&self, schema: &TableSchema, missing: &MissingIndexes) -> Result<()> {
        self.add(schema, missing).await
    }

    async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
        self.drop_one(schema).await
    }

    async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()> {
        self.write_row(schema, row, write::Expect::Absent)
            .await
            .map(drop)
    }

    async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64> {
        self.write_row(schema, row, write::Expect::Any).await
    }

    // Batches (issue 21, item 6).

    async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
        self.put_rows(schema, rows).await
    }

    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
        self.delete_records(schema, keys).await
    }

    async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()> {
        self.write_row(schema, row, write::Expect::Version(expected))
            .await
            .map(drop)
    }

    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool> {
        self.delete_record(schema, key, expected).await
    }

    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
        self.get_record(schema, key).await
    }

    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        self.get_records(schema, keys).await
    }

    async fn get_selected(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: &Projection,
    ) -> Result<Option<Record>> {
        self.get_record_selected(schema, key, fetch).await
    }

    async fn get_many_selected(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: &Projection,
    ) -> Result<Vec<Option<Record>>> {
        self.get_records_selected(schema, keys, Some(fetch), Consistency::ReadAfterWrite)
            .await
    }

    fn eventual_reads(&self) -> Consistency {
        // `ConsistentRead=false` may answer from a replica a second or so behind.
        Consistency::Eventual
    }

    async fn get_at(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Option<Record>> {
        self.get_record_at(schema, key, fetch, consistency).await
    }

    async fn get_many_at(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Record>>> {
        self.get_records_selected(schema, keys, fetch, consistency)
            .await
    }

    async fn count_query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<u64> {
        self.count_query_records(schema, query).await
    }

    async fn record_table(&self, schema: &TableSchema) -> Result<()> {
        self.record_adopted(schema).await
    }

    async fn table_size(&self, schema: &TableSchema) -> Result<storekit_core::table::TableSize> {
        let output = self
            .client
            .describe_table()
            .table_name(self.table_name(schema))
            .send_counted()
            .await
            .map_err(crate::error::sdk)?;
        let table = output
            .table
            .unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build());
        Ok(storekit_core::table::TableSize {
            records: table.item_count.and_then(|n| u64::try_from(n).ok()),
            bytes: table.table_size_bytes.and_then(|n| u64::try_from(n).ok()),
            exact: false,
        })
    }

    async fn query_selected(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
        fetch: &Projection,
    ) -> Result<Fetched> {
        self.query_records(schema, query, Some(fetch)).await
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        self.contains_record(schema, key).await
    }

    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        self.get_by_marker(schema, index, values).await
    }

    async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Fetched> {
        self.query_records(schema, query, None).await
    }

    async fn scan(&self, schema: &TableSchema, scan: &TableScan<'_>) -> Result<Fetched> {
        self.scan_records(schema, scan).await
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        self.count_records(schema).await
    }

    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&DocCondition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        self.patch_record(schema, key, patch, condition, returning)
            .await
    }
    // Conditional writes (issue 21, item 5).

    async fn put_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        condition: &DocCondition,
        existing: bool,
    ) -> Result<u64> {
        self.write_row_if(schema, row, write::Expect::Any, Some(condition), existing)
            .await
    }

    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &DocCondition,
    ) -> Result<bool> {
        self.delete_record_if(schema, key, None, Some(condition))
            .await
    }
    // Transactions (issue 21, item 7).

    async fn transact(&self, steps: &[storekit_core::table::transact::Step]) -> Result<()> {
        self.transact_steps(steps).await
    }
}

/// Records written at once by `import_records`, each its own transaction.
const RECORD_CONCURRENCY: usize = 8;

/// Copying tables out and in, for `storekit copy`: `list_tables` is a Scan of the marker
/// table's catalog items and a DescribeTable per table; `import_records` is `put`'s write at
/// the given version per record, a few records in flight.
#[async_trait]
impl TableTransferBackend for DynamoDbStore {
    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>> {
        self.list_cataloged().await
    }

    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()> {
        // Built before the stream: a closure in `StreamExt::map` would make the future of this
        // `async_trait` method too general to be `Send`.
        let writes: Vec<_> = rows
            .iter()
            .map(|(row, version)| self.write_row(schema, row, write::Expect::At(*version)))
            .collect();
        stream::iter(writes)
            .buffer_unordered(RECORD_CONCURRENCY)
            .try_collect::<Vec<u64>>()
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use storekit_core::table::{KeyDef, RESERVED_TABLE_NAMES};

    use super::*;

    #[test]
    fn no_schema_can_name_the_store_s_own_tables() {
        for own in ["users", "kv", UNIQUE_TABLE] {
            assert!(RESERVED_TABLE_NAMES.contains(&own), "{own}");
            assert!(
                TableSchema::builder(own, KeyDef::text("id"))
                    .build()
                    .is_err()
            );
        }
    }
}
