//! The rules a record's document follows on every backend: those of DynamoDB, the strictest.

use serde_json::Value;

use super::value::{KeyValue, MAX_KEY_BYTES};
use crate::{Error, Result};

/// A record as stored: a JSON object whose top-level fields are the record's attributes.
pub type Document = serde_json::Map<String, Value>;

/// Document fields starting with this are storekit's own (a record's version on DynamoDB).
pub const RESERVED_FIELD_PREFIX: &str = "_storekit";
/// DynamoDB's item size limit, 400 KB.
const DYNAMODB_ITEM_BYTES: usize = 400 * 1024;
/// What storekit adds to an item of its own (the version attribute), kept free.
const RESERVED_BYTES: usize = 256;
/// Largest document, measured by DynamoDB's item-size rule ([`dynamodb_size`]).
pub const MAX_DOCUMENT_BYTES: usize = DYNAMODB_ITEM_BYTES - RESERVED_BYTES;

/// Checks a document and brings it to the form every backend reads back identically.
///
/// Refused: a top-level field starting with `_storekit` (storekit's own), NUL in a string or
/// field name, an empty field name or one over
/// [`MAX_FIELD_NAME_BYTES`](crate::validate::MAX_FIELD_NAME_BYTES) at any depth, nesting deeper than DynamoDB allows, numbers outside
/// DynamoDB's range ([`Error::InvalidInput`]), and a document over [`MAX_DOCUMENT_BYTES`] by
/// DynamoDB's rule ([`Error::ValueTooLarge`]). Changed as DynamoDB would change it: a float
/// with an integral value becomes that integer (`2.0` → `2`, `-0.0` → `0`, `1e19` →
/// `10000000000000000000`).
pub fn canonicalize(document: &mut Document) -> Result<()> {
    if let Some(field) = document
        .keys()
        .find(|f| f.starts_with(RESERVED_FIELD_PREFIX))
    {
        return Err(Error::invalid(
            "document",
            format!("field {field:?} starts with the reserved {RESERVED_FIELD_PREFIX:?}"),
        ));
    }
    crate::validate::normalize_json("document", document)?;
    crate::validate::check_size("document", dynamodb_size(document), MAX_DOCUMENT_BYTES)
}

/// A document's size as a DynamoDB item, by AWS's published rules, erring large: names and
/// strings by their UTF-8 bytes, a number one byte per two characters plus one, 3 bytes per
/// list or map plus one per element.
#[must_use]
pub fn dynamodb_size(document: &Document) -> usize {
    document
        .iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::String(text) => text.len(),
        Value::Number(number) => number_chars(number).div_ceil(2) + 1,
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(fields) => {
            3 + fields
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// How many characters a number takes as text: digits and sign of an integer, counted without
/// formatting it; a float's shortest form.
fn number_chars(number: &serde_json::Number) -> usize {
    if let Some(int) = number.as_i64() {
        usize::from(int < 0) + digits(int.unsigned_abs())
    } else if let Some(int) = number.as_u64() {
        digits(int)
    } else {
        number.to_string().len()
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// A unique index's values together fit one DynamoDB key, whatever the backend.
pub(crate) fn check_unique_size(index: &str, values: &[KeyValue]) -> Result<()> {
    let size: usize = values
        .iter()
        .map(|value| match value {
            KeyValue::Text(text) => text.len(),
            KeyValue::Bytes(bytes) => bytes.len(),
            KeyValue::Int(_) | KeyValue::Float(_) => 8,
        })
        .sum();
    if size > MAX_KEY_BYTES {
        return Err(Error::invalid(
            "key",
            format!("unique index {index:?} holds {size} bytes, over the limit of {MAX_KEY_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(value: Value) -> Document {
        match value {
            Value::Object(map) => map,
            _ => Document::new(),
        }
    }

    #[test]
    fn numbers_read_back_as_dynamodb_returns_them() {
        let mut d = doc(
            json!({"a": 2.0, "b": -0.0, "c": 0.5, "d": 1e19, "e": u64::MAX, "f": i64::MIN, "g": 1e20}),
        );
        canonicalize(&mut d).expect("valid");
        assert_eq!(
            Value::Object(d),
            json!({"a": 2, "b": 0, "c": 0.5, "d": 10_000_000_000_000_000_000_u64, "e": u64::MAX, "f": i64::MIN, "g": 1e20})
        );
    }

    #[test]
    fn sizes_count_numbers_by_their_digits() {
        let d = doc(json!({"a": -12345, "b": u64::MAX, "c": 0, "d": 0.5}));
        // name + one byte per two characters + 1: "-12345" 6, u64::MAX 20, "0" 1, "0.5" 3.
        assert_eq!(dynamodb_size(&d), (1 + 4) + (1 + 11) + (1 + 2) + (1 + 3));
    }

    #[test]
    fn what_dynamodb_refuses_is_refused_everywhere() {
        let refused = |v: Value| canonicalize(&mut doc(v)).is_err();
        assert!(refused(json!({"_storekit_version": 1})));
        assert!(refused(json!({"a": "nul\u{0}"})));
        assert!(refused(json!({"": 1})));
        let limit = crate::validate::MAX_FIELD_NAME_BYTES;
        assert!(refused(json!({"a".repeat(limit + 1): 1})));
        assert!(refused(
            json!({"a": {"b": [{"é".repeat(limit / 2 + 1): 1}]}})
        ));
        assert!(!refused(json!({"a".repeat(limit): 1})));
        assert!(!refused(json!({"a": [{"é".repeat(limit / 2): 1}]})));
        assert!(refused(json!({"a": 1e300})));
        assert!(refused(json!({"a": "x".repeat(MAX_DOCUMENT_BYTES)})));
        assert!(!refused(json!({"a": "x".repeat(MAX_DOCUMENT_BYTES - 1)})));
    }
}
