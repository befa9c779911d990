//! Items as DynamoDB stores them: attribute helpers, serde conversion and the item size rule.
//!
//! Every item this crate writes goes through [`check_size`] first, so an item over DynamoDB's
//! 400 KB limit is refused with [`Error::ValueTooLarge`] before any request is sent, never with
//! a raw `ValidationException` from the server.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use storekit_core::{Error, Result};

use crate::error;

/// An item: attribute names to values.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The partition key attribute of every table.
pub(crate) const PK: &str = "pk";
/// The sort key attribute of every table.
pub(crate) const SK: &str = "sk";

/// DynamoDB's largest item: 400 KB, counting attribute names and values.
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;

/// A string attribute.
pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The primary key of an item.
pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// A string attribute of a stored item; a missing or mistyped one means the item is malformed.
pub(crate) fn get_s<'a>(item: &'a Item, table: &str, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(error::bad_item(
            table,
            format!("no string attribute {name}"),
        )),
    }
}

/// An optional integer attribute of a stored item.
pub(crate) fn get_i64(item: &Item, table: &str, name: &str) -> Result<Option<i64>> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| error::bad_item(table, format!("{name} = {value} is not an i64"))),
        Some(_) => Err(error::bad_item(table, format!("{name} is not a number"))),
    }
}

/// Serializes a record to attributes (maps stay native maps).
pub(crate) fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::to_item(value).map_err(|e| Error::backend(error::BACKEND, e))
}

/// Deserializes a record written by [`to_item`]; extra attributes (keys) are ignored.
pub(crate) fn from_item<T: DeserializeOwned>(item: Item, table: &str) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| error::bad_item(table, e))
}

/// Fails with [`Error::ValueTooLarge`] if the item would exceed DynamoDB's item size limit.
pub(crate) fn check_size(item: &Item) -> Result<()> {
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(Error::ValueTooLarge {
            what: "item",
            size,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// The size DynamoDB charges an item: each attribute's name length plus its value's size.
///
/// The rules are AWS's published ones; where they are approximate (numbers, nesting overhead)
/// this errs on the large side, so an item that passes here is never refused by the server.
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_size(n)).sum(),
        // 3 bytes per container plus 1 per element, as AWS documents for lists and maps.
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        // A type this crate never writes; count it as large as DynamoDB allows numbers to be.
        _ => 21,
    }
}

/// One byte per two digits plus one, as AWS documents; signs, points and zeros are counted
/// as digits, so this is never an underestimate.
fn number_size(number: &str) -> usize {
    number.len().div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::primitives::Blob;

    use super::*;

    #[test]
    fn sizes_follow_the_published_rules() {
        let item = HashMap::from([
            ("pk".to_owned(), s("abc")),
            ("v".to_owned(), AttributeValue::B(Blob::new(vec![0u8; 10]))),
            ("n".to_owned(), n(12345)),
            ("b".to_owned(), AttributeValue::Bool(true)),
        ]);
        assert_eq!(item_size(&item), (2 + 3) + (1 + 10) + (1 + 4) + (1 + 1));
    }

    #[test]
    fn an_item_one_byte_over_the_limit_is_refused() {
        let at_limit = HashMap::from([(
            "v".to_owned(),
            AttributeValue::B(Blob::new(vec![0u8; MAX_ITEM_BYTES - 1])),
        )]);
        assert!(check_size(&at_limit).is_ok());
        let over = HashMap::from([(
            "v".to_owned(),
            AttributeValue::B(Blob::new(vec![0u8; MAX_ITEM_BYTES])),
        )]);
        assert!(matches!(
            check_size(&over),
            Err(Error::ValueTooLarge { size, limit: MAX_ITEM_BYTES, .. }) if size == MAX_ITEM_BYTES + 1
        ));
    }
}
