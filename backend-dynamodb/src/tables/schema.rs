//! Declared tables as DynamoDB tables: describing a live one (DescribeTable and the catalog
//! item), creating one with its global secondary indexes, adding indexes to a live one, and
//! dropping one with its markers.
//!
//! A live table is described from DynamoDB's own answer, so a table made by Terraform is
//! compared with the schema as it is: keys and global secondary indexes with their attribute
//! types and projections, its billing, each index's throughput and (when the schema declares
//! any) its tags. Two things DynamoDB cannot say come from the catalog item storekit writes:
//! the unique indexes, and whether an `N` key was declared int or float (without a catalog,
//! it is taken as declared, or as int). Global secondary indexes the schema does not declare
//! are described too, and left alone.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{
    IndexStatus, KeySchemaElement, KeyType as DynamoKeyType, ScalarAttributeType, TableDescription,
    TableStatus,
};
use storekit_core::table::{KeyShape, KeyType, MissingIndexes, TableSchema, TableShape};
use storekit_core::{Error, Result};

use crate::DynamoDbStore;
use crate::count::Counted as _;
use crate::definition::TableDefinition;
use crate::error::{self, DynamoError};
use crate::item::{self as items, Item, s};
use crate::schema::{POLL, TABLE_WAIT};

/// The sort key of a table's catalog item.
const CATALOG_SK: &str = "CATALOG";
/// The catalog attribute holding the table's shape, as JSON.
const SHAPE: &str = "shape";
/// The catalog attribute marking a table `ensure_table` adopted (found, not made): a store's
/// `drop_tables` leaves such an exact-named table alone.
pub(crate) const ADOPTED: &str = "adopted";

fn not_found<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ResourceNotFoundException")
}

/// Every key field a shape names, with its type.
fn shape_kinds(shape: &TableShape) -> HashMap<String, KeyType> {
    std::iter::once(&shape.partition)
        .chain(&shape.sort)
        .chain(
            shape
                .indexes
                .iter()
                .flat_map(|i| std::iter::once(&i.partition).chain(&i.sort)),
        )
        .chain(shape.uniques.iter().flat_map(|u| &u.components))
        .map(|k| (k.field.clone(), k.kind))
        .collect()
}

/// A live table's shape, from DynamoDB's description and storekit's catalog.
fn shape_of(
    schema: &TableSchema,
    table: &str,
    description: &TableDescription,
    catalog: Option<&TableShape>,
) -> Result<TableShape> {
    let types: HashMap<&str, &ScalarAttributeType> = description
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name(), d.attribute_type()))
        .collect();
    let cataloged = catalog.map(shape_kinds).unwrap_or_default();
    let declared: HashMap<&str, KeyType> = schema.key_fields().into_iter().collect();
    let numeric = |kind: &KeyType| matches!(kind, KeyType::Int | KeyType::Float);
    let bad = |why: String| -> Error {
        DynamoError::Schema {
            table: table.to_owned(),
            why,
        }
        .into()
    };
    let shape = |element: &KeySchemaElement| -> Result<KeyShape> {
        let field = element.attribute_name();
        let kind = match types.get(field) {
            Some(ScalarAttributeType::S) => KeyType::Text,
            Some(ScalarAttributeType::B) => KeyType::Bytes,
            Some(ScalarAttributeType::N) => cataloged
                .get(field)
                .filter(|k| numeric(k))
                .or_else(|| declared.get(field).filter(|k| numeric(k)))
                .copied()
                .unwrap_or(KeyType::Int),
            other => return Err(bad(format!("key {field:?} has the type {other:?}"))),
        };
        Ok(KeyShape {
            field: field.to_owned(),
            kind,
        })
    };
    let keys = |elements: &[KeySchemaElement]| -> Result<(KeyShape, Option<KeyShape>)> {
        let of = |kind: DynamoKeyType| elements.iter().find(|e| *e.key_type() == kind);
        let partition = of(DynamoKeyType::Hash)
            .ok_or_else(|| bad("a key schema has no HASH key".to_owned()))?;
        Ok((
            shape(partition)?,
            of(DynamoKeyType::Range).map(shape).transpose()?,
        ))
    };
    let (partition, sort) = keys(description.key_schema())?;
    let mut indexes = Vec::new();
    for index in description.global_secondary_indexes() {
        let (index_partition, index_sort) = keys(index.key_schema())?;
        indexes.push(storekit_core::table::IndexShape {
            name: index.index_name().unwrap_or_default().to_owned(),
            partition: index_partition,
            sort: index_sort,
            projection: crate::definition::live_projection(index.projection()),
            throughput: crate::definition::live_index_throughput(index),
        });
    }
    Ok(TableShape {
        partition,
        sort,
        indexes,
        uniques: catalog.map(|c| c.uniques.clone()).unwrap_or_default(),
        ttl: None,
        exact_name: schema.is_exact_name(),
        billing: crate::definition::live_billing(description),
        // Read apart (ListTagsOfResource), when the schema declares tags.
        tags: std::collections::BTreeMap::new(),
        // DynamoDB cannot say which attribute holds versions: the catalog can, else (a
        // table adopted as it is) the declared one is taken.
        version_attribute: match catalog {
            Some(catalog) => catalog.version_attribute.clone(),
            None => schema.shape().version_attribute,
        },
    })
}

/// Whether a description shows the table and every index usable.
fn ready(description: &TableDescription) -> bool {
    description.table_status() == Some(&TableStatus::Active)
        && description.global_secondary_indexes().iter().all(|i| {
            i.index_status() == Some(&IndexStatus::Active) && i.backfilling() != Some(true)
        })
}

impl DynamoDbStore {
    fn catalog_key(schema: &TableSchema) -> Item {
        items::key(schema.name(), CATALOG_SK)
    }

    /// The table's catalog item, if storekit wrote one; none either if the marker table does
    /// not exist yet (a table adopted before any `ensure_table` made it).
    pub(super) async fn read_catalog(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        let sent = self
            .client
            .get_item()
            .table_name(&self.unique_table)
            .set_key(Some(Self::catalog_key(schema)))
            .consistent_read(true)
            .send_counted()
            .await;
        let item = match sent {
            Ok(output) => output.item,
            Err(err) if not_found(&err) => None,
            Err(err) => return Err(error::sdk(err)),
        };
        let Some(item) = item else { return Ok(None) };
        let text = items::get_s(&item, &self.unique_table, SHAPE)?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| error::bad_item(&self.unique_table, e))
    }

    /// Every catalog item: each table storekit made or adopted, with the shape it recorded,
    /// ordered by name. None if the marker table does not exist.
    pub(crate) async fn catalogs(&self) -> Result<Vec<(String, TableShape)>> {
        let mut found = Vec::new();
        for item in self.catalog_items(false).await? {
            let name = items::get_s(&item, &self.unique_table, items::PK)?.to_owned();
            let text = items::get_s(&item, &self.unique_table, SHAPE)?;
            let shape =
                serde_json::from_str(text).map_err(|e| error::bad_item(&self.unique_table, e))?;
            found.push((name, shape));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// The names of the tables whose catalog item marks them adopted ([`ADOPTED`]).
    pub(crate) async fn adopted_names(&self) -> Result<Vec<String>> {
        self.catalog_items(true)
            .await?
            .iter()
            .map(|item| Ok(items::get_s(item, &self.unique_table, items::PK)?.to_owned()))
            .collect()
    }

    /// The catalog items of the marker table, read consistently over every page: all of them,
    /// or only the names of those marked [`ADOPTED`]. None if the marker table does not exist.
    async fn catalog_items(&self, adopted_only: bool) -> Result<Vec<Item>> {
        let mut p = super::Placeholders::default();
        let mut filter = format!("{} = {}", p.name(items::SK), p.value(s(CATALOG_SK)));
        let mut projection = None;
        if adopted_only {
            filter = format!("{filter} AND attribute_exists({})", p.name(ADOPTED));
            projection = Some(p.name(items::PK));
        }
        let (names, values) = (p.names(), p.values());
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let sent = self
                .client
                .scan()
                .table_name(&self.unique_table)
                .consistent_read(true)
                .filter_expression(&filter)
                .set_projection_expression(projection.clone())
                .set_expression_attribute_names(names.clone())
                .set_expression_attribute_values(values.clone())
                .set_exclusive_start_key(start)
                .send_counted()
                .await;
            let output = match sent {
                Ok(output) => output,
                Err(err) if not_found(&err) => return Ok(found),
                Err(err) => return Err(error::sdk(err)),
            };
            found.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => return Ok(found),
            }
        }
    }

    /// Every cataloged table that exists, with its live shape (as `describe` reads it),
    /// ordered by name.
    pub(crate) async fn list_cataloged(&self) -> Result<Vec<(String, TableShape)>> {
        let mut tables = Vec::new();
        for (name, shape) in self.catalogs().await? {
            let schema = TableSchema::from_shape(&name, &shape)?;
            if let Some(live) = self.describe(&schema).await? {
                tables.push((name, live));
            }
        }
        Ok(tables)
    }

    /// The definition of every cataloged table, as its catalog shape declares it.
    pub(crate) async fn cataloged_definitions(&self) -> Result<Vec<TableDefinition>> {
        self.catalogs()
            .await?
            .iter()
            .map(|(name, shape)| {
                let schema = TableSchema::from_shape(name, shape)?;
                Ok(TableDefinition::declared(self.table_name(&schema), &schema))
            })
            .collect()
    }

    /// Records the declared shape as the table's catalog (an update of the shape alone, so
    /// that an adopted table stays marked as such, see [`ADOPTED`]).
    pub(super) async fn write_catalog(&self, schema: &TableSchema) -> Result<()> {
        self.write_catalog_item(schema, false).await
    }

    /// Writes the table's catalog item with the declared shape; `adopted` also marks it as a
    /// table storekit found rather than made.
    pub(super) async fn write_catalog_item(
        &self,
        schema: &TableSchema,
        adopted: bool,
    ) -> Result<()> {
        let shape = serde_json::to_string(&schema.shape())
            .map_err(|e| Error::backend(error::BACKEND, e))?;
        let mut p = super::Placeholders::default();
        let mut expression = format!("SET {} = {}", p.name(SHAPE), p.value(s(shape)));
        if adopted {
            let flag = p.value(aws_sdk_dynamodb::types::AttributeValue::Bool(true));
            expression = format!("{expression}, {} = {flag}", p.name(ADOPTED));
        }
        self.client
            .update_item()
            .table_name(&self.unique_table)
            .set_key(Some(Self::catalog_key(schema)))
            .update_expression(expression)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .send_counted()
            .await
            .map_err(error::sdk)?;
        Ok(())
    }

    /// The live table's shape, or `None` if it does not exist.
    pub(super) async fn describe(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        Ok(self.describe_checked(schema).await?.map(|(shape, _)| shape))
    }

    /// The live table's shape, and how its billing, index throughputs and declared tags
    /// differ from the schema's (DynamoDB's own settings, which core's comparison leaves to
    /// the backend); `None` if it does not exist.
    pub(super) async fn describe_checked(
        &self,
        schema: &TableSchema,
    ) -> Result<Option<(TableShape, Vec<String>)>> {
        let table = self.table_name(schema);
        let Some(description) = self.description(&table).await? else {
            return Ok(None);
        };
        let catalog = self.read_catalog(schema).await?;
        let mut shape = shape_of(schema, &table, &description, catalog.as_ref())?;
        // One more request only for a schema that declares tags (and none where the server
        // cannot tell them).
        let mut read_tags = false;
        if !schema.tags().is_empty()
            && let Some(tags) = crate::schema::tags_of(&self.client, &description).await?
        {
            shape.tags = tags;
            read_tags = true;
        }
        let tags = read_tags.then_some(&shape.tags);
        let differences = TableDefinition::declared(table.clone(), schema)
            .capacity_differences(&description, tags);
        // DynamoDB's native TTL is the table's own setting: read it, so that a table whose
        // TTL is off or on another attribute than declared is reported.
        let (status, attribute) = crate::schema::ttl_of(&self.client, &table).await?;
        shape.ttl = attribute.filter(|_| crate::schema::ttl_on(status.as_ref()));
        Ok(Some((shape, differences)))
    }

    async fn description(&self, table: &str) -> Result<Option<TableDescription>> {
        match self
            .client
            .describe_table()
            .table_name(table)
            .send_counted()
            .await
        {
            Ok(output) => Ok(output.table),
            Err(err) if not_found(&err) => Ok(None),
            Err(err) => Err(error::sdk(err)),
        }
    }

    /// Waits until the table and every index on it are active (an index just added is
    /// backfilled by DynamoDB first).
    async fn wait_ready(&self, table: &str) -> Result<()> {
        self.wait_ready_for(table, None).await
    }

    /// [`Self::wait_ready`], for the index `index` being added: if the wait runs out, the
    /// error names that index.
    async fn wait_ready_for(&self, table: &str, index: Option<&str>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        loop {
            if self.description(table).await?.as_ref().is_some_and(ready) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match index {
                    Some(index) => DynamoError::IndexWait {
                        table: table.to_owned(),
                        index: index.to_owned(),
                    },
                    None => DynamoError::TableWait {
                        table: table.to_owned(),
                        state: "active with its indexes",
                    },
                }
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates the marker table unless it exists, and waits until it is active.
    pub(super) async fn ensure_unique_table(&self) -> Result<()> {
        if self
            .description(&self.unique_table)
            .await?
            .is_some_and(|d| d.table_status() == Some(&TableStatus::Active))
        {
            return Ok(());
        }
        let markers = crate::definition::marker_table(&self.config);
        crate::schema::create_table(&self.client, &markers).await?;
        let description = crate::schema::wait_active(&self.client, &markers.name).await?;
        crate::schema::check(&markers, &description)
    }

    /// Creates the table with its indexes and catalog, and waits until it is usable; a table
    /// a concurrent call created is waited for.
    pub(super) async fn create(&self, schema: &TableSchema) -> Result<()> {
        let table = self.table_name(schema);
        self.ensure_unique_table().await?;
        // The catalog item is keyed by the name alone: a store holds one table of a name,
        // exact or prefixed, never both.
        if let Some(recorded) = self.read_catalog(schema).await?
            && recorded.exact_name != schema.is_exact_name()
        {
            let named = |exact: bool| {
                if exact {
                    "exactly"
                } else {
                    "with the store's prefix"
                }
            };
            return Err(Error::SchemaMismatch {
                table: schema.name().to_owned(),
                differences: vec![format!(
                    "the table is named {}, declared {}",
                    named(recorded.exact_name),
                    named(schema.is_exact_name())
                )],
            });
        }
        let created = TableDefinition::declared(table.clone(), schema)
            .create_request(&self.client)?
            .send_counted()
            .await;
        match created {
            // Written before the table is active, so a concurrent `ensure_table` waiting for it
            // finds its unique indexes.
            Ok(_) => {
                tracing::info!(table, "created dynamodb table");
                self.write_catalog(schema).await?;
            }
            Err(err) if err.code() == Some("ResourceInUseException") => {}
            Err(err) => return Err(error::sdk(err)),
        }
        self.wait_ready(&table).await?;
        // Native TTL deletes expired records within days; reads leave them out meanwhile.
        if let Some(ttl) = schema.ttl() {
            crate::schema::enable_ttl(&self.client, &table, ttl).await?;
        }
        Ok(())
    }

    /// Builds the missing unique indexes from the records (first, so that a duplicate leaves
    /// the table's indexes as they were), adds the missing global secondary indexes one at a
    /// time (DynamoDB backfills each before the next may start), and records the catalog.
    pub(super) async fn add(&self, schema: &TableSchema, missing: &MissingIndexes) -> Result<()> {
        let table = self.table_name(schema);
        self.ensure_unique_table().await?;
        if !missing.uniques.is_empty()
            && let Err(err) = self.backfill(schema, &missing.uniques).await
        {
            // Nothing half-built stays: a marker left from a refused addition would hold
            // its value against every later writer once the index is declared.
            for &u in &missing.uniques {
                self.delete_markers_of(schema, Some(u)).await?;
            }
            return Err(err);
        }
        for &position in &missing.indexes {
            self.add_index(schema, &table, position).await?;
        }
        self.write_catalog(schema).await
    }

    async fn add_index(&self, schema: &TableSchema, table: &str, position: usize) -> Result<()> {
        let index = &schema.indexes()[position];
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        loop {
            let live = self
                .description(table)
                .await?
                .ok_or(Error::NotFound { what: "table" })?;
            // Added meanwhile by a concurrent `ensure_table`: wait for it like for our own.
            if live
                .global_secondary_indexes()
                .iter()
                .any(|i| i.index_name() == Some(index.name()))
            {
                return self.wait_ready_for(table, Some(index.name())).await;
            }
            let sent = TableDefinition::declared(table.to_owned(), schema)
                .add_index_request(&self.client, position)?
                .send_counted()
                .await;
            match sent {
                Ok(_) => {
                    tracing::info!(table, index = index.name(), "adding a dynamodb index");
                    return self.wait_ready_for(table, Some(index.name())).await;
                }
                // Another index is being built, or another caller adds this one: look again.
                Err(err)
                    if matches!(
                        err.code(),
                        Some("ResourceInUseException" | "LimitExceededException")
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(err) => return Err(error::sdk(err)),
            }
        }
    }

    /// Deletes the table and waits until it is gone, then its catalog and markers.
    pub(super) async fn drop_one(&self, schema: &TableSchema) -> Result<bool> {
        let table = self.table_name(schema);
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        let existed = loop {
            match self
                .client
                .delete_table()
                .table_name(&table)
                .send_counted()
                .await
            {
                Ok(_) => break true,
                Err(err) if not_found(&err) => break false,
                // Being created or changed: it can be deleted once that is done.
                Err(err)
                    if err.code() == Some("ResourceInUseException")
                        && tokio::time::Instant::now() < deadline =>
                {
                    self.wait_ready(&table).await?;
                }
                Err(err) => return Err(error::sdk(err)),
            }
        };
        if existed {
            crate::schema::wait_gone(&self.client, &table).await?;
        }
        match self.forget(schema).await {
            Err(Error::NotFound { what: "table" }) => {}
            other => other?,
        }
        Ok(existed)
    }

    /// Deletes a table's catalog item and markers.
    async fn forget(&self, schema: &TableSchema) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.unique_table)
            .set_key(Some(Self::catalog_key(schema)))
            .send_counted()
            .await
            .map_err(error::sdk)?;
        self.delete_markers_of(schema, None).await
    }

    /// The names of every table starting with the store's prefix.
    pub(crate) async fn tables_under_prefix(&self) -> Result<Vec<String>> {
        let prefix = self.config.table_prefix();
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let output = self
                .client
                .list_tables()
                .set_exclusive_start_table_name(start)
                .send()
                .await
                .map_err(error::sdk)?;
            names.extend(
                output
                    .table_names()
                    .iter()
                    .filter(|name| name.starts_with(prefix))
                    .cloned(),
            );
            match output.last_evaluated_table_name {
                Some(last) => start = Some(last),
                None => return Ok(names),
            }
        }
    }
}
