//! Tables and items through the raw SDK, as another client of the same table makes and fills
//! them (Terraform creating it, a PynamoDB model writing it): what the tests of tables made
//! outside storekit share.

// Each test binary that includes this module uses the helpers it needs, not all of them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, IndexStatus,
    KeySchemaElement, KeyType as DynamoKeyType, Projection, ProjectionType, ScalarAttributeType,
    TableStatus,
};
use serde_json::Value;
use storekit_core::table::Document;

/// A random hex suffix, so that each run's tables and prefixes are its own.
pub(crate) fn suffix() -> String {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("randomness");
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// The document of a JSON object.
pub(crate) fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A string attribute.
pub(crate) fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

/// A number attribute.
pub(crate) fn n(number: u64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// The definition of a key attribute.
pub(crate) fn attribute(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("attribute")
}

/// The key schema of `keys`: the partition key, then the sort key if there is one.
pub(crate) fn key_schema(keys: &[&str]) -> Vec<KeySchemaElement> {
    keys.iter()
        .zip([DynamoKeyType::Hash, DynamoKeyType::Range])
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(*name)
                .key_type(kind)
                .build()
                .expect("key")
        })
        .collect()
}

/// Creates a table with the raw SDK, as Terraform would: on demand, on `keys` (the partition
/// key, then the sort key if there is one), with a global secondary index on `index`'s keys
/// projecting everything, if there is one.
pub(crate) async fn create_raw(
    client: &Client,
    table: &str,
    keys: &[(&str, ScalarAttributeType)],
    index: Option<(&str, &[(&str, ScalarAttributeType)])>,
) {
    fn names<'a>(keys: &[(&'a str, ScalarAttributeType)]) -> Vec<&'a str> {
        keys.iter().map(|(name, _)| *name).collect()
    }
    let mut attributes: Vec<&(&str, ScalarAttributeType)> = keys.iter().collect();
    for key in index.map_or(&[][..], |(_, keys)| keys) {
        if !attributes.iter().any(|(name, _)| *name == key.0) {
            attributes.push(key);
        }
    }
    let attributes = attributes
        .into_iter()
        .map(|(name, kind)| attribute(name, kind.clone()))
        .collect();
    let indexes = index.map(|(name, keys)| {
        vec![
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(key_schema(&names(keys))))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        ]
    });
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&names(keys))))
        .set_global_secondary_indexes(indexes)
        .send()
        .await
        .expect("create table");
}

/// Waits until the table and its indexes are active.
pub(crate) async fn wait_active(client: &Client, table: &str) {
    for _ in 0..400 {
        let description = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe")
            .table
            .expect("a table");
        let ready = description.table_status() == Some(&TableStatus::Active)
            && description
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{table} never became active");
}

/// Deletes the table if it is there, and waits until it is gone.
pub(crate) async fn delete_raw(client: &Client, table: &str) {
    if client.delete_table().table_name(table).send().await.is_ok() {
        for _ in 0..400 {
            if client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Writes an item with the raw SDK, as another client would.
pub(crate) async fn put_raw<'a>(
    client: &Client,
    table: &str,
    item: impl IntoIterator<Item = (&'a str, AttributeValue)>,
) {
    let item = item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put item");
}

/// Reads the item at `key` with the raw SDK, consistently.
pub(crate) async fn get_raw<'a>(
    client: &Client,
    table: &str,
    key: impl IntoIterator<Item = (&'a str, AttributeValue)>,
) -> Option<HashMap<String, AttributeValue>> {
    let key = key.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
}
