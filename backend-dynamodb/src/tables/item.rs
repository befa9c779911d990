//! Records as DynamoDB items, laid out so that another client of the table (a PynamoDB model, a
//! Terraform-made table's other writers) reads and writes the same attributes.
//!
//! Every top-level document field is a native attribute: strings `S`, numbers `N`, booleans
//! `BOOL`, `null` `NULL`, arrays `L` and objects `M`, nested natively. The one exception is a
//! bytes key field, base64 text in the document and `B` in the item, since a key attribute of
//! type `B` is what such a field is on a table made outside storekit. The record's version is the
//! number attribute the schema names (`TableSchema::version_attribute`, `_storekit_version`
//! by default, `version` for a table shared with a PynamoDB model's `VersionAttribute`); an
//! item without it (written by another client) is at version 0.
//!
//! Reading is the reverse, and leaves numbers as core's canonical documents have them: an `N`
//! is an `i64`, else a `u64`, else an `f64`, an integral one becoming that integer, so a record
//! reads back exactly as the write returned it. A `B` anywhere reads as standard base64 text;
//! sets written by another client read as arrays.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Number, Value};
use storekit_core::table::{Document, KeyType, KeyValue, Record, RecordKey, Row, TableSchema};
use storekit_core::{Error, Result};

use crate::error;
use crate::item::{self, Item};

/// The attribute a table's records keep their version in (the schema's; documents may not
/// hold a field of that name, and by default it carries the reserved `_storekit` prefix).
pub(crate) fn version_attribute(schema: &TableSchema) -> &str {
    schema.version_attribute()
}

/// A key value as the attribute of its type.
pub(crate) fn key_value(value: &KeyValue) -> AttributeValue {
    match value {
        KeyValue::Text(text) => AttributeValue::S(text.clone()),
        KeyValue::Int(int) => AttributeValue::N(int.to_string()),
        KeyValue::Bytes(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
        // The document's form of the float: an integral one is its integer, as stored.
        KeyValue::Float(_) => AttributeValue::N(value.to_json().to_string()),
    }
}

/// A version as a number attribute.
pub(crate) fn version_value(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

/// The primary key of a record's item.
pub(crate) fn key_item(schema: &TableSchema, key: &RecordKey) -> Item {
    let mut item = HashMap::from([(
        schema.partition().field().to_owned(),
        key_value(&key.partition),
    )]);
    if let (Some(def), Some(sort)) = (schema.sort(), &key.sort) {
        item.insert(def.field().to_owned(), key_value(sort));
    }
    item
}

/// The item of a record at `version`.
pub(crate) fn record_item(schema: &TableSchema, row: &Row, version: u64) -> Result<Item> {
    let mut item: Item = row
        .document()
        .iter()
        .map(|(field, value)| (field.clone(), attribute(value)))
        .collect();
    for (field, kind) in schema.key_fields() {
        if kind != KeyType::Bytes {
            continue;
        }
        // The row read every key field, so a bytes key present here is valid base64.
        if let Some(Value::String(text)) = row.document().get(field) {
            let bytes = STANDARD
                .decode(text)
                .map_err(|_| Error::invalid("document", format!("{field:?} is not base64")))?;
            item.insert(field.to_owned(), AttributeValue::B(Blob::new(bytes)));
        }
    }
    item.insert(version_attribute(schema).to_owned(), version_value(version));
    item::check_size(&item)?;
    Ok(item)
}

/// A JSON value as a native attribute.
pub(crate) fn attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(attribute).collect()),
        Value::Object(fields) => AttributeValue::M(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), attribute(v)))
                .collect(),
        ),
    }
}

/// A stored attribute as JSON; `Err` says what could not be read.
pub(crate) fn json(value: &AttributeValue) -> std::result::Result<Value, String> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => Value::Number(number(text)?),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::B(bytes) => Value::String(STANDARD.encode(bytes.as_ref())),
        AttributeValue::L(items) => Value::Array(items.iter().map(json).collect::<Result<_, _>>()?),
        AttributeValue::M(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| Ok((name.clone(), json(v)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
        AttributeValue::Ss(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(set) => Value::Array(
            set.iter()
                .map(|n| number(n).map(Value::Number))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::Bs(set) => Value::Array(
            set.iter()
                .map(|b| Value::String(STANDARD.encode(b.as_ref())))
                .collect(),
        ),
        other => return Err(format!("an attribute of an unknown type: {other:?}")),
    })
}

/// A stored number as core's canonical documents hold it.
fn number(text: &str) -> std::result::Result<Number, String> {
    if let Ok(int) = text.parse::<i64>() {
        return Ok(int.into());
    }
    if let Ok(int) = text.parse::<u64>() {
        return Ok(int.into());
    }
    let float: f64 = text
        .parse()
        .map_err(|_| format!("the number {text:?} cannot be read"))?;
    // Written by another client as e.g. "5.0" or "1E+3": the integer core would have made it.
    if float.fract() == 0.0 {
        if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float) {
            #[allow(clippy::cast_possible_truncation)] // integral and in range, checked above
            return Ok((float as i64).into());
        }
        if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // as above
            return Ok((float as u64).into());
        }
    }
    Number::from_f64(float).ok_or_else(|| format!("the number {text:?} is not finite"))
}

/// The version of a stored item: 0 for an item another client wrote without one.
pub(crate) fn version_of(schema: &TableSchema, item: &Item, table: &str) -> Result<u64> {
    let attribute = version_attribute(schema);
    match item.get(attribute) {
        None => Ok(0),
        Some(AttributeValue::N(text)) => text
            .parse()
            .map_err(|_| error::bad_item(table, format!("{attribute} = {text} is not a version"))),
        Some(_) => Err(error::bad_item(
            table,
            format!("{attribute} is not a number"),
        )),
    }
}

/// A stored item's document, without the version.
pub(crate) fn document(schema: &TableSchema, item: &Item, table: &str) -> Result<Document> {
    let attribute = version_attribute(schema);
    item.iter()
        .filter(|(name, _)| name.as_str() != attribute)
        .map(|(name, value)| {
            json(value)
                .map(|v| (name.clone(), v))
                .map_err(|why| error::bad_item(table, format!("attribute {name:?}: {why}")))
        })
        .collect()
}

/// A stored item as a record.
pub(crate) fn record(schema: &TableSchema, table: &str, item: &Item) -> Result<Record> {
    let document = document(schema, item, table)?;
    let key = schema
        .key_of(&document)
        .map_err(|e| error::bad_item(table, e))?;
    Ok(Record {
        key,
        version: version_of(schema, item, table)?,
        document,
    })
}

/// The values a stored document holds in each unique index (`None` where it lacks a component
/// or holds one of another type, which no marker can stand for).
pub(crate) fn unique_values(
    schema: &TableSchema,
    document: &Document,
) -> Vec<Option<Vec<KeyValue>>> {
    schema
        .uniques()
        .iter()
        .map(|unique| {
            unique
                .components()
                .iter()
                .map(|c| c.read(document).ok().flatten())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_read_back_as_canonical_documents_hold_them() {
        let read = |text: &str| number(text).map(Value::Number);
        assert_eq!(read("18446744073709551615"), Ok(json!(u64::MAX)));
        assert_eq!(read("-9223372036854775808"), Ok(json!(i64::MIN)));
        assert_eq!(read("100000000000000000000"), Ok(json!(1e20)));
        assert_eq!(read("1E+125"), Ok(json!(1e125)));
        assert_eq!(read("0.1"), Ok(json!(0.1)));
        assert_eq!(read("5.0"), Ok(json!(5)));
        assert_eq!(read("-1E-129"), Ok(json!(-1e-129)));
        assert!(read("abc").is_err());
    }

    #[test]
    fn documents_round_trip_through_attributes() {
        let value = json!({"a": [1, 0.5, null, true, "é", {"b": []}], "m": {}});
        let back = json(&attribute(&value));
        assert_eq!(back, Ok(value));
    }
}
