//! The store's tables as Terraform or CloudFormation, for `storekit schema --backend
//! dynamodb`: rendered from the same definitions `migrate` and `ensure_table` send to
//! DynamoDB, so an exported table is exactly the table the store would create.
//!
//! Both renderers take the [`ExportOptions`] (the table prefix, [`DynamoDbConfig::DEFAULT_PREFIX`]
//! when it is empty, as for a store; and whether to include the store's own tables) and the declared tables to include. Without the own stores
//! ([`ExportOptions::tables_only`]) the output still holds the marker table
//! (`{prefix}storekit_unique`): it keeps the unique markers and each table's catalog item,
//! which `ensure_table` needs. The id kind changes nothing here: ids are stored in string
//! keys either way. A table made from an export has no catalog item yet; the first
//! `ensure_table` adopts it as it is and records one (building its unique indexes from the
//! records), and reports no drift.
//!
//! ```
//! use storekit_core::admin::ExportOptions;
//! use storekit_core::table::{KeyDef, TableSchema};
//!
//! let products = TableSchema::builder("products", KeyDef::text("id"))
//!     .index("by_name", KeyDef::text("name"), Some(KeyDef::int("updated_at")))
//!     .build()?;
//! let options = ExportOptions::default().prefix("shop_");
//! let terraform = storekit_dynamodb::export::terraform(&options, &[&products])?;
//! assert!(terraform.contains(r#"resource "aws_dynamodb_table" "shop_products""#));
//! let template = storekit_dynamodb::export::cloudformation(&options, &[&products])?;
//! assert!(template.contains("AWS::DynamoDB::Table"));
//! # Ok::<(), storekit_core::Error>(())
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use storekit_core::admin::ExportOptions;
use storekit_core::table::{Billing, IndexProjection, TableSchema};
use storekit_core::{Error, Result};

use crate::DynamoDbConfig;
use crate::definition::{self, TableDefinition};

/// The tables an export holds: the store's own (or only the marker table), then the declared
/// tables in the order given.
fn definitions(options: &ExportOptions, tables: &[&TableSchema]) -> Result<Vec<TableDefinition>> {
    // The config checks the prefix, as it does for a store, and names the tables. No prefix
    // given is the prefix a store gets without one (a DynamoDB store always has one).
    let prefix = if options.prefix.is_empty() {
        DynamoDbConfig::DEFAULT_PREFIX
    } else {
        &options.prefix
    };
    let config = DynamoDbConfig::builder()
        .table_prefix(prefix)
        .id_kind(options.id_kind)
        .build()?;
    let mut definitions: Vec<TableDefinition> = if options.stores {
        definition::own_tables(&config).into()
    } else {
        vec![definition::marker_table(&config)]
    };
    for schema in tables {
        let name = crate::tables::table_name(config.table_prefix(), schema);
        if definitions.iter().any(|d| d.name == name) {
            return Err(Error::invalid(
                "tables",
                format!("table {:?} is given twice", schema.name()),
            ));
        }
        definitions.push(TableDefinition::declared(name, schema));
    }
    Ok(definitions)
}

/// A label unique within one document: two table names can map to one label (`a_b` and
/// `a__b` to one logical id), which would make them one resource; a suffix keeps them apart.
fn unique_label(taken: &mut HashSet<String>, base: &str) -> String {
    let mut label = base.to_owned();
    let mut n = 2;
    while !taken.insert(label.clone()) {
        label = format!("{base}_{n}");
        n += 1;
    }
    label
}

/// A Terraform string literal: JSON's escapes are HCL's, and `${` and `%{` would start a
/// template.
fn hcl_string(text: &str) -> String {
    Value::from(text)
        .to_string()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

/// The tables as Terraform `aws_dynamodb_table` resources (billed as declared: per request,
/// or provisioned with `read_capacity`/`write_capacity` on the table and each index; with
/// their key attributes, global secondary indexes with their projections and
/// `non_key_attributes`, tags, and TTL where declared), each resource labelled as its table
/// is named.
///
/// [`Error::InvalidInput`] if the prefix is not one a store accepts, or a table is given twice.
pub fn terraform(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
    let mut out = String::from(
        "# DynamoDB tables of storekit, rendered by `storekit schema --backend dynamodb \
         --format terraform`.\n",
    );
    let mut labels = HashSet::new();
    for table in definitions(options, tables)? {
        let base: String = table
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            base
        } else {
            format!("_{base}")
        };
        let label = unique_label(&mut labels, &base);
        render_terraform(&mut out, &label, &table);
    }
    Ok(out)
}

fn render_terraform(out: &mut String, label: &str, table: &TableDefinition) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "\nresource \"aws_dynamodb_table\" {} {{",
        hcl_string(label)
    );
    let _ = writeln!(out, "  name         = {}", hcl_string(&table.name));
    let _ = writeln!(
        out,
        "  billing_mode = {}",
        hcl_string(billing_mode(table.billing))
    );
    if let Billing::Provisioned(throughput) = table.billing {
        let _ = writeln!(out, "  read_capacity  = {}", throughput.read);
        let _ = writeln!(out, "  write_capacity = {}", throughput.write);
    }
    let _ = writeln!(out, "  hash_key     = {}", hcl_string(&table.hash));
    if let Some(range) = &table.range {
        let _ = writeln!(out, "  range_key    = {}", hcl_string(range));
    }
    for (name, kind) in &table.attributes {
        let _ = writeln!(out, "\n  attribute {{");
        let _ = writeln!(out, "    name = {}", hcl_string(name));
        let _ = writeln!(out, "    type = {}", hcl_string(kind.as_str()));
        let _ = writeln!(out, "  }}");
    }
    for index in &table.indexes {
        let _ = writeln!(out, "\n  global_secondary_index {{");
        let _ = writeln!(out, "    name            = {}", hcl_string(&index.name));
        let _ = writeln!(out, "    hash_key        = {}", hcl_string(&index.hash));
        if let Some(range) = &index.range {
            let _ = writeln!(out, "    range_key       = {}", hcl_string(range));
        }
        let _ = writeln!(
            out,
            "    projection_type = {}",
            hcl_string(projection_type(&index.projection))
        );
        let included = index.projection.included();
        if !included.is_empty() {
            let names: Vec<String> = included.iter().map(|f| hcl_string(f)).collect();
            let _ = writeln!(out, "    non_key_attributes = [{}]", names.join(", "));
        }
        if let Some(throughput) = index.throughput {
            let _ = writeln!(out, "    read_capacity   = {}", throughput.read);
            let _ = writeln!(out, "    write_capacity  = {}", throughput.write);
        }
        let _ = writeln!(out, "  }}");
    }
    if let Some(ttl) = &table.ttl {
        let _ = writeln!(out, "\n  ttl {{");
        let _ = writeln!(out, "    attribute_name = {}", hcl_string(ttl));
        let _ = writeln!(out, "    enabled        = true");
        let _ = writeln!(out, "  }}");
    }
    if !table.tags.is_empty() {
        let _ = writeln!(out, "\n  tags = {{");
        for (key, value) in &table.tags {
            let _ = writeln!(out, "    {} = {}", hcl_string(key), hcl_string(value));
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
}

/// DynamoDB's name of a billing mode.
fn billing_mode(billing: Billing) -> &'static str {
    match billing {
        Billing::OnDemand => "PAY_PER_REQUEST",
        Billing::Provisioned(_) => "PROVISIONED",
    }
}

/// DynamoDB's name of a projection type.
fn projection_type(projection: &IndexProjection) -> &'static str {
    match projection {
        IndexProjection::All => "ALL",
        IndexProjection::KeysOnly => "KEYS_ONLY",
        IndexProjection::Include(_) => "INCLUDE",
    }
}

fn cloudformation_throughput(throughput: storekit_core::table::Throughput) -> Value {
    json!({ "ReadCapacityUnits": throughput.read, "WriteCapacityUnits": throughput.write })
}

/// The tables as a CloudFormation template (JSON) of `AWS::DynamoDB::Table` resources
/// (`BillingMode` and, when provisioned, `ProvisionedThroughput` on the table and each index;
/// `AttributeDefinitions`, `KeySchema`, `GlobalSecondaryIndexes` with their `Projection`,
/// `Tags`, and `TimeToLiveSpecification` where declared). Logical ids are the table names in CamelCase, letters and digits only.
///
/// [`Error::InvalidInput`] if the prefix is not one a store accepts, or a table is given twice.
pub fn cloudformation(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
    let mut resources = serde_json::Map::new();
    let mut ids = HashSet::new();
    for table in definitions(options, tables)? {
        let id = unique_label(&mut ids, &logical_id(&table.name));
        resources.insert(id, cloudformation_table(&table));
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "DynamoDB tables of storekit, rendered by `storekit schema --backend \
                        dynamodb --format cloudformation`",
        "Resources": resources,
    });
    serde_json::to_string_pretty(&template).map_err(|e| Error::backend(crate::error::BACKEND, e))
}

/// `shop_products` → `ShopProducts`; a leading digit gets `Table` before it.
fn logical_id(name: &str) -> String {
    let mut id = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        id.insert_str(0, "Table");
    }
    id
}

fn cloudformation_keys(hash: &str, range: Option<&str>) -> Value {
    let mut keys = vec![json!({ "AttributeName": hash, "KeyType": "HASH" })];
    if let Some(range) = range {
        keys.push(json!({ "AttributeName": range, "KeyType": "RANGE" }));
    }
    Value::Array(keys)
}

fn cloudformation_table(table: &TableDefinition) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("TableName".into(), json!(table.name));
    properties.insert("BillingMode".into(), json!(billing_mode(table.billing)));
    if let Billing::Provisioned(throughput) = table.billing {
        properties.insert(
            "ProvisionedThroughput".into(),
            cloudformation_throughput(throughput),
        );
    }
    properties.insert(
        "AttributeDefinitions".into(),
        table
            .attributes
            .iter()
            .map(|(name, kind)| json!({ "AttributeName": name, "AttributeType": kind.as_str() }))
            .collect(),
    );
    properties.insert(
        "KeySchema".into(),
        cloudformation_keys(&table.hash, table.range.as_deref()),
    );
    if !table.indexes.is_empty() {
        properties.insert(
            "GlobalSecondaryIndexes".into(),
            table
                .indexes
                .iter()
                .map(|index| {
                    let mut projection =
                        json!({ "ProjectionType": projection_type(&index.projection) });
                    let included = index.projection.included();
                    if !included.is_empty() {
                        projection["NonKeyAttributes"] = json!(included);
                    }
                    let mut gsi = json!({
                        "IndexName": index.name,
                        "KeySchema": cloudformation_keys(&index.hash, index.range.as_deref()),
                        "Projection": projection,
                    });
                    if let Some(throughput) = index.throughput {
                        gsi["ProvisionedThroughput"] = cloudformation_throughput(throughput);
                    }
                    gsi
                })
                .collect(),
        );
    }
    if let Some(ttl) = &table.ttl {
        properties.insert(
            "TimeToLiveSpecification".into(),
            json!({ "AttributeName": ttl, "Enabled": true }),
        );
    }
    if !table.tags.is_empty() {
        properties.insert(
            "Tags".into(),
            table
                .tags
                .iter()
                .map(|(key, value)| json!({ "Key": key, "Value": value }))
                .collect(),
        );
    }
    json!({ "Type": "AWS::DynamoDB::Table", "Properties": properties })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_logical_ids_stay_distinct() {
        assert_eq!(logical_id("shop_products"), "ShopProducts");
        assert_eq!(logical_id("1x"), "Table1x");
        let mut taken = HashSet::new();
        assert_eq!(unique_label(&mut taken, "a"), "a");
        assert_eq!(unique_label(&mut taken, "a"), "a_2");
        assert_eq!(hcl_string("a${b}\""), r#""a$${b}\"""#);
    }
}
