//! The one definition of every DynamoDB table storekit makes: its name, key attributes with
//! their types, keys, global secondary indexes with their projections, billing, tags and TTL
//! attribute.
//!
//! `migrate` and `ensure_table` send CreateTable (and UpdateTable, to add an index) built from
//! a [`TableDefinition`]; the Terraform and CloudFormation exports (the export module) render
//! the same value, and `schema_differences` compares a live table with it. So a key name or
//! type is written down once, and an exported table is the table the backend would have made.
//! The store's own tables are billed per request; a declared table as its schema says
//! (`TableSchemaBuilder::billing`), each index projecting what it declares.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::operation::update_table::builders::UpdateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexDescription, GlobalSecondaryIndexUpdate, KeySchemaElement,
    KeyType as DynamoKeyType, Projection, ProjectionType, ProvisionedThroughput,
    ScalarAttributeType, TableDescription, Tag,
};
use storekit_core::Result;
use storekit_core::table::{Billing, IndexProjection, KeyDef, KeyType, TableSchema, Throughput};

use crate::config::DynamoDbConfig;
use crate::error;
use crate::item::{PK, SK};
use crate::kv::TTL;

/// A table as storekit creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableDefinition {
    /// The table's name in DynamoDB, prefix included.
    pub(crate) name: String,
    /// Every attribute a key of the table or of an index names, with its type, each once.
    pub(crate) attributes: Vec<(String, ScalarAttributeType)>,
    /// The partition (HASH) key.
    pub(crate) hash: String,
    /// The sort (RANGE) key.
    pub(crate) range: Option<String>,
    /// The global secondary indexes.
    pub(crate) indexes: Vec<IndexDefinition>,
    /// The attribute native TTL is enabled on.
    pub(crate) ttl: Option<String>,
    /// How the table is billed.
    pub(crate) billing: Billing,
    /// Its tags.
    pub(crate) tags: BTreeMap<String, String>,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexDefinition {
    /// Its name.
    pub(crate) name: String,
    /// Its partition key.
    pub(crate) hash: String,
    /// Its sort key.
    pub(crate) range: Option<String>,
    /// What it holds of each item.
    pub(crate) projection: IndexProjection,
    /// Its capacity, on a provisioned table (the index's own or the table's).
    pub(crate) throughput: Option<Throughput>,
}

/// The attribute type a key type is stored as (`N` holds both ints and floats).
pub(crate) fn scalar(kind: KeyType) -> ScalarAttributeType {
    match kind {
        KeyType::Text => ScalarAttributeType::S,
        KeyType::Int | KeyType::Float => ScalarAttributeType::N,
        KeyType::Bytes => ScalarAttributeType::B,
    }
}

/// The store's own tables: users, key-value (with TTL) and the tables store's markers, in
/// that order.
pub(crate) fn own_tables(config: &DynamoDbConfig) -> [TableDefinition; 3] {
    [
        TableDefinition::own(config.users_table(), None),
        TableDefinition::own(config.kv_table(), Some(TTL)),
        marker_table(config),
    ]
}

/// The table of unique-value markers and table catalogs.
pub(crate) fn marker_table(config: &DynamoDbConfig) -> TableDefinition {
    TableDefinition::own(config.unique_table(), None)
}

impl TableDefinition {
    /// One of the store's own tables: string `pk` and `sk`, no index.
    fn own(name: String, ttl: Option<&'static str>) -> Self {
        Self {
            name,
            attributes: vec![
                (PK.to_owned(), ScalarAttributeType::S),
                (SK.to_owned(), ScalarAttributeType::S),
            ],
            hash: PK.to_owned(),
            range: Some(SK.to_owned()),
            indexes: Vec::new(),
            ttl: ttl.map(str::to_owned),
            billing: Billing::OnDemand,
            tags: BTreeMap::new(),
        }
    }

    /// A declared table, named `name` in DynamoDB: its keys are the record's own fields, and
    /// each query index is a global secondary index named as declared.
    pub(crate) fn declared(name: String, schema: &TableSchema) -> Self {
        let mut attributes: Vec<(String, ScalarAttributeType)> = Vec::new();
        let mut add = |def: &KeyDef| {
            if !attributes.iter().any(|(field, _)| field == def.field()) {
                attributes.push((def.field().to_owned(), scalar(def.kind())));
            }
        };
        add(schema.partition());
        schema.sort().into_iter().for_each(&mut add);
        for index in schema.indexes() {
            add(index.partition());
            index.sort().into_iter().for_each(&mut add);
        }
        Self {
            name,
            attributes,
            hash: schema.partition().field().to_owned(),
            range: schema.sort().map(|s| s.field().to_owned()),
            indexes: schema
                .indexes()
                .iter()
                .enumerate()
                .map(|(position, index)| IndexDefinition {
                    name: index.name().to_owned(),
                    hash: index.partition().field().to_owned(),
                    range: index.sort().map(|s| s.field().to_owned()),
                    projection: index.projection().clone(),
                    throughput: schema.index_throughput(position),
                })
                .collect(),
            ttl: schema.ttl().map(str::to_owned),
            billing: schema.billing(),
            tags: schema.tags().clone(),
        }
    }

    /// The type of a key attribute.
    pub(crate) fn attribute_type(&self, name: &str) -> Option<&ScalarAttributeType> {
        self.attributes
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, kind)| kind)
    }

    /// The attribute definitions of these attributes (in the definition's order).
    fn attribute_definitions(&self, names: &[&str]) -> Result<Vec<AttributeDefinition>> {
        self.attributes
            .iter()
            .filter(|(field, _)| names.contains(&field.as_str()))
            .map(|(field, kind)| {
                AttributeDefinition::builder()
                    .attribute_name(field)
                    .attribute_type(kind.clone())
                    .build()
                    .map_err(error::build)
            })
            .collect()
    }

    /// The CreateTable request making the table with its indexes, billing and tags; not sent.
    pub(crate) fn create_request(&self, client: &Client) -> Result<CreateTableFluentBuilder> {
        let names: Vec<&str> = self.attributes.iter().map(|(f, _)| f.as_str()).collect();
        let indexes = self
            .indexes
            .iter()
            .map(|index| {
                GlobalSecondaryIndex::builder()
                    .index_name(&index.name)
                    .set_key_schema(Some(key_schema(&index.hash, index.range.as_deref())?))
                    .projection(projection(&index.projection))
                    .set_provisioned_throughput(index.throughput.map(provisioned).transpose()?)
                    .build()
                    .map_err(error::build)
            })
            .collect::<Result<Vec<_>>>()?;
        let tags = self
            .tags
            .iter()
            .map(|(key, value)| {
                Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .map_err(error::build)
            })
            .collect::<Result<Vec<_>>>()?;
        let (mode, throughput) = match self.billing {
            Billing::OnDemand => (BillingMode::PayPerRequest, None),
            Billing::Provisioned(throughput) => {
                (BillingMode::Provisioned, Some(provisioned(throughput)?))
            }
        };
        Ok(client
            .create_table()
            .table_name(&self.name)
            .billing_mode(mode)
            .set_provisioned_throughput(throughput)
            .set_attribute_definitions(Some(self.attribute_definitions(&names)?))
            .set_key_schema(Some(key_schema(&self.hash, self.range.as_deref())?))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .set_tags((!tags.is_empty()).then_some(tags)))
    }

    /// The UpdateTable request adding the index at `position` to the live table, with its
    /// projection and, on a provisioned table, its throughput (which DynamoDB requires
    /// there); not sent.
    pub(crate) fn add_index_request(
        &self,
        client: &Client,
        position: usize,
    ) -> Result<UpdateTableFluentBuilder> {
        let index = &self.indexes[position];
        let mut names = vec![self.hash.as_str(), index.hash.as_str()];
        names.extend(self.range.as_deref());
        names.extend(index.range.as_deref());
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(&index.name)
            .set_key_schema(Some(key_schema(&index.hash, index.range.as_deref())?))
            .projection(projection(&index.projection))
            .set_provisioned_throughput(index.throughput.map(provisioned).transpose()?)
            .build()
            .map_err(error::build)?;
        Ok(client
            .update_table()
            .table_name(&self.name)
            .set_attribute_definitions(Some(self.attribute_definitions(&names)?))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            ))
    }

    /// How the live table's billing, the throughput of the declared indexes it has, and its
    /// tags (when read: `None` leaves them out) differ from the definition. Tags the
    /// definition does not have are left alone, as indexes are.
    pub(crate) fn capacity_differences(
        &self,
        live: &TableDescription,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Vec<String> {
        let mut differences = Vec::new();
        let billing = live_billing(live);
        if billing != self.billing {
            differences.push(format!("billed {billing}, declared {}", self.billing));
        } else if let Billing::Provisioned(_) = self.billing {
            for index in &self.indexes {
                let Some(found) = live
                    .global_secondary_indexes()
                    .iter()
                    .find(|i| i.index_name() == Some(index.name.as_str()))
                else {
                    continue;
                };
                let throughput = live_index_throughput(found);
                if throughput != index.throughput {
                    let said =
                        |t: Option<Throughput>| t.map_or("none".to_owned(), |t| t.to_string());
                    differences.push(format!(
                        "index {:?} is provisioned at {}, declared {}",
                        index.name,
                        said(throughput),
                        said(index.throughput)
                    ));
                }
            }
        }
        if let Some(live_tags) = tags {
            differences.extend(self.tag_differences(live_tags));
        }
        differences
    }

    /// The declared tags the live table lacks or holds with another value; tags it has
    /// beyond them are left alone.
    pub(crate) fn tag_differences(&self, live: &BTreeMap<String, String>) -> Vec<String> {
        self.tags
            .iter()
            .filter_map(|(key, value)| match live.get(key) {
                None => Some(format!("tag {key:?} is missing, declared {value:?}")),
                Some(found) if found != value => {
                    Some(format!("tag {key:?} is {found:?}, declared {value:?}"))
                }
                Some(_) => None,
            })
            .collect()
    }

    /// How a live table differs from the definition: its keys, the types of the key
    /// attributes, each index's keys and projection, the billing and each index's
    /// throughput. Indexes the definition does not have are left alone (another client may
    /// query by them); TTL and tags are checked apart (by the schema module), as
    /// DescribeTable does not show them.
    pub(crate) fn differences(&self, live: &TableDescription) -> Vec<String> {
        let mut differences = Vec::new();
        let types = |elements: &[KeySchemaElement]| -> Vec<String> {
            elements
                .iter()
                .map(|e| {
                    let kind = live
                        .attribute_definitions()
                        .iter()
                        .find(|d| d.attribute_name() == e.attribute_name())
                        .map_or("?", |d| d.attribute_type().as_str());
                    format!("{} {} {kind}", e.key_type().as_str(), e.attribute_name())
                })
                .collect()
        };
        let wanted = |hash: &str, range: Option<&str>| -> Vec<String> {
            std::iter::once((DynamoKeyType::Hash, hash))
                .chain(range.map(|r| (DynamoKeyType::Range, r)))
                .map(|(key, name)| {
                    let kind = self.attribute_type(name).map_or("?", |t| t.as_str());
                    format!("{} {name} {kind}", key.as_str())
                })
                .collect()
        };
        let (live_keys, keys) = (
            types(live.key_schema()),
            wanted(&self.hash, self.range.as_deref()),
        );
        if live_keys != keys {
            differences.push(format!(
                "key schema is ({}), expected ({})",
                live_keys.join(", "),
                keys.join(", ")
            ));
        }
        for index in &self.indexes {
            let Some(found) = live
                .global_secondary_indexes()
                .iter()
                .find(|i| i.index_name() == Some(index.name.as_str()))
            else {
                differences.push(format!("index {:?} is missing", index.name));
                continue;
            };
            let (live_keys, keys) = (
                types(found.key_schema()),
                wanted(&index.hash, index.range.as_deref()),
            );
            if live_keys != keys {
                differences.push(format!(
                    "index {:?} key schema is ({}), expected ({})",
                    index.name,
                    live_keys.join(", "),
                    keys.join(", ")
                ));
            }
            let projection = live_projection(found.projection());
            if projection != index.projection {
                differences.push(format!(
                    "index {:?} projects {projection}, expected {}",
                    index.name, index.projection
                ));
            }
        }
        differences.extend(self.capacity_differences(live, None));
        differences
    }
}

/// A projection as DynamoDB takes it.
fn projection(projection: &IndexProjection) -> Projection {
    let kind = match projection {
        IndexProjection::All => ProjectionType::All,
        IndexProjection::KeysOnly => ProjectionType::KeysOnly,
        IndexProjection::Include(_) => ProjectionType::Include,
    };
    let included = projection.included();
    Projection::builder()
        .projection_type(kind)
        .set_non_key_attributes((!included.is_empty()).then(|| included.to_vec()))
        .build()
}

/// A live index's projection (a missing one read as `ALL`, DynamoDB's only default).
pub(crate) fn live_projection(projection: Option<&Projection>) -> IndexProjection {
    match projection.and_then(Projection::projection_type) {
        Some(ProjectionType::KeysOnly) => IndexProjection::KeysOnly,
        Some(ProjectionType::Include) => IndexProjection::include(
            projection
                .map(Projection::non_key_attributes)
                .unwrap_or_default()
                .iter()
                .cloned(),
        ),
        _ => IndexProjection::All,
    }
}

/// How a live table is billed: on demand when DynamoDB says `PAY_PER_REQUEST`; otherwise
/// (a table made before on-demand existed says nothing) provisioned at what it reports.
pub(crate) fn live_billing(live: &TableDescription) -> Billing {
    let mode = live
        .billing_mode_summary()
        .and_then(|summary| summary.billing_mode());
    if mode == Some(&BillingMode::PayPerRequest) {
        return Billing::OnDemand;
    }
    let units = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or_default();
    let throughput = live.provisioned_throughput();
    Billing::Provisioned(Throughput::new(
        units(throughput.and_then(|t| t.read_capacity_units())),
        units(throughput.and_then(|t| t.write_capacity_units())),
    ))
}

/// A live index's provisioned throughput; `None` on an on-demand table, which reports 0.
pub(crate) fn live_index_throughput(index: &GlobalSecondaryIndexDescription) -> Option<Throughput> {
    let throughput = index.provisioned_throughput()?;
    let units = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or_default();
    let found = Throughput::new(
        units(throughput.read_capacity_units()),
        units(throughput.write_capacity_units()),
    );
    (found != Throughput::new(0, 0)).then_some(found)
}

fn provisioned(throughput: Throughput) -> Result<ProvisionedThroughput> {
    // The schema's builder keeps both within i64.
    let units = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    ProvisionedThroughput::builder()
        .read_capacity_units(units(throughput.read))
        .write_capacity_units(units(throughput.write))
        .build()
        .map_err(error::build)
}

fn key_schema(hash: &str, range: Option<&str>) -> Result<Vec<KeySchemaElement>> {
    std::iter::once((hash, DynamoKeyType::Hash))
        .chain(range.map(|r| (r, DynamoKeyType::Range)))
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(error::build)
        })
        .collect()
}
