//! Key values: the four types a table key or index key can have, and their one order.

use std::cmp::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::{Error, Result};

/// Longest text or bytes key value, in bytes: DynamoDB's limit for a sort key, the smaller
/// of its two key limits, applied to every key on every backend.
pub const MAX_KEY_BYTES: usize = 1024;

/// The type of a key attribute, and so its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// UTF-8 text, in byte order (no locale, no normalisation). A JSON string in the document.
    Text,
    /// A 64-bit signed integer, in numeric order. A JSON integer in the document.
    Int,
    /// Bytes, in unsigned byte order. A standard, padded base64 string in the document; a
    /// binary attribute or column in the database.
    Bytes,
    /// A finite float, in numeric order: `-0.0` is `0`, NaN and infinities are refused, and
    /// the magnitude is within DynamoDB's number range. A JSON number in the document.
    Float,
}

impl KeyType {
    /// The type's name, as schemas and error messages spell it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Int => "int",
            Self::Bytes => "bytes",
            Self::Float => "float",
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One key value. Values of one type compare in that type's order; the variants never meet
/// in one index, since a key attribute has one type.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum KeyValue {
    /// See [`KeyType::Text`].
    Text(String),
    /// See [`KeyType::Int`].
    Int(i64),
    /// See [`KeyType::Bytes`].
    Bytes(#[serde(with = "base64_bytes")] Vec<u8>),
    /// See [`KeyType::Float`]; build it with [`KeyValue::float`] to have it checked.
    Float(f64),
}

impl KeyValue {
    /// A float key value, checked: finite, within DynamoDB's number range, `-0.0` as `0.0`.
    pub fn float(value: f64) -> Result<Self> {
        check_float(value).map(Self::Float)
    }

    /// The value's type.
    #[must_use]
    pub fn key_type(&self) -> KeyType {
        match self {
            Self::Text(_) => KeyType::Text,
            Self::Int(_) => KeyType::Int,
            Self::Bytes(_) => KeyType::Bytes,
            Self::Float(_) => KeyType::Float,
        }
    }

    /// The value as a document field holds it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::Text(text) => Value::String(text.clone()),
            Self::Int(int) => Value::from(*int),
            Self::Bytes(bytes) => Value::String(STANDARD.encode(bytes)),
            Self::Float(float) => float_json(*float),
        }
    }

    /// The text, if this is a text value.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Reads a document field as a key of type `kind`: `None` when the field is absent or
    /// `null`, [`Error::InvalidInput`] naming `field` when it has another type, is empty text or
    /// bytes, or is too long.
    pub fn from_field(kind: KeyType, field: &str, value: Option<&Value>) -> Result<Option<Self>> {
        Self::read_field(kind, field, value, true)
    }

    /// [`KeyValue::from_field`] for a document already stored, which storekit versions
    /// before the float-exactness rule may have written with an integer no `f64` holds in a
    /// float key: it reads as the nearest float, as it always did, so that the record stays
    /// readable and deletable (a page that would repeat it is refused by the layer, never
    /// looped on).
    pub(crate) fn from_stored_field(
        kind: KeyType,
        field: &str,
        value: Option<&Value>,
    ) -> Result<Option<Self>> {
        Self::read_field(kind, field, value, false)
    }

    fn read_field(
        kind: KeyType,
        field: &str,
        value: Option<&Value>,
        exact: bool,
    ) -> Result<Option<Self>> {
        let wrong = || {
            Error::invalid(
                "document",
                format!("field {field:?} is a key of type {kind}, and holds another type"),
            )
        };
        let key = match (kind, value) {
            (_, None | Some(Value::Null)) => return Ok(None),
            (KeyType::Text, Some(Value::String(text))) => Self::Text(text.clone()),
            (KeyType::Int, Some(Value::Number(n))) => Self::Int(n.as_i64().ok_or_else(wrong)?),
            (KeyType::Float, Some(Value::Number(n))) if exact => {
                Self::Float(check_float(exact_float(field, n)?)?)
            }
            (KeyType::Float, Some(Value::Number(n))) => {
                Self::Float(check_float(n.as_f64().ok_or_else(wrong)?)?)
            }
            (KeyType::Bytes, Some(Value::String(text))) => {
                Self::Bytes(STANDARD.decode(text).map_err(|_| {
                    Error::invalid(
                        "document",
                        format!("field {field:?} is a bytes key and is not standard base64"),
                    )
                })?)
            }
            _ => return Err(wrong()),
        };
        key.check(field)?;
        Ok(Some(key))
    }

    /// Checks the value as a key of `field`: text and bytes non-empty and at most
    /// [`MAX_KEY_BYTES`], floats finite and in range.
    pub(crate) fn check(&self, field: &str) -> Result<()> {
        let len = match self {
            Self::Text(text) => text.len(),
            Self::Bytes(bytes) => bytes.len(),
            Self::Int(_) => return Ok(()),
            Self::Float(float) => return check_float(*float).map(drop),
        };
        if len == 0 {
            return Err(Error::invalid(
                "key",
                format!("{field:?} is empty, and no backend indexes an empty key"),
            ));
        }
        if len > MAX_KEY_BYTES {
            return Err(Error::invalid(
                "key",
                format!("{field:?} is {len} bytes, over the limit of {MAX_KEY_BYTES} bytes"),
            ));
        }
        if let Self::Text(text) = self
            && text.contains('\0')
        {
            return Err(Error::invalid(
                "key",
                format!("{field:?} must not contain NUL"),
            ));
        }
        Ok(())
    }

    /// Whether this value starts with `prefix` (text and bytes; bytewise).
    #[must_use]
    pub fn begins_with(&self, prefix: &Self) -> bool {
        match (self, prefix) {
            (Self::Text(value), Self::Text(prefix)) => {
                value.as_bytes().starts_with(prefix.as_bytes())
            }
            (Self::Bytes(value), Self::Bytes(prefix)) => value.starts_with(prefix),
            _ => false,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Text(_) => 0,
            Self::Int(_) => 1,
            Self::Bytes(_) => 2,
            Self::Float(_) => 3,
        }
    }
}

/// A float as a document holds it: an integral value that fits an `i64` is that integer, as
/// DynamoDB returns it.
fn float_json(float: f64) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("n".to_owned(), Value::from(float));
    // The same rule documents follow; a checked float is always in range.
    match crate::validate::normalize_json("key", &mut object) {
        Ok(()) => object.remove("n").unwrap_or(Value::Null),
        Err(_) => Value::from(float),
    }
}

/// The float a JSON number stands for, only if it stands for it exactly.
///
/// A JSON float (`0.1`, `1e19`) is parsed to the nearest `f64` and written back as that
/// `f64`, so it always is one. A JSON integer is kept as written by every backend's document
/// column, but a float key reads it as an `f64`: past 2^53 some integers have no `f64`, and the
/// key read (2^53 for 2^53 + 1) would not be the value stored. On DynamoDB the stored number
/// is the written integer, so the key returned would never find its record again. Refusing
/// them keeps every key reachable; 2^60 or `1e19` (integers an `f64` holds) stay accepted.
fn exact_float(field: &str, number: &serde_json::Number) -> Result<f64> {
    let integer = number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from));
    let float = number.as_f64().unwrap_or(f64::NAN);
    match integer {
        // `as` from an f64 of at most 2^64 into i128 is exact; a float that is not the
        // integer converts to another number.
        Some(integer) if float as i128 != integer => Err(Error::invalid(
            "document",
            format!(
                "field {field:?} is a float key, and the integer {integer} has no exact float \
                 (a float key holds integers up to 2^53 exactly, larger ones only when an f64 \
                 holds them)"
            ),
        )),
        _ => Ok(float),
    }
}

fn check_float(value: f64) -> Result<f64> {
    let (smallest, largest) = crate::validate::EXTRA_NUMBER_RANGE;
    let magnitude = value.abs();
    if !value.is_finite() || magnitude >= largest || (magnitude != 0.0 && magnitude < smallest) {
        return Err(Error::invalid(
            "key",
            format!("the float {value} is not finite or outside the range every backend stores"),
        ));
    }
    // -0.0 and 0.0 are one key: DynamoDB stores both as 0.
    Ok(if value == 0.0 { 0.0 } else { value })
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyValue {}

impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // `str`'s order is UTF-8 byte order, which is what BINARY, "C" and DynamoDB use.
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Bytes(a), Self::Bytes(b)) => a.cmp(b),
            // Checked floats are finite and never -0.0, so total order is numeric order.
            (Self::Float(a), Self::Float(b)) => a.total_cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl std::hash::Hash for KeyValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Self::Text(text) => text.hash(state),
            Self::Int(int) => int.hash(state),
            Self::Bytes(bytes) => bytes.hash(state),
            Self::Float(float) => float.to_bits().hash(state),
        }
    }
}

impl From<&str> for KeyValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for KeyValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&String> for KeyValue {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<i64> for KeyValue {
    fn from(int: i64) -> Self {
        Self::Int(int)
    }
}

impl From<i32> for KeyValue {
    fn from(int: i32) -> Self {
        Self::Int(int.into())
    }
}

impl From<Vec<u8>> for KeyValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<&[u8]> for KeyValue {
    fn from(bytes: &[u8]) -> Self {
        Self::Bytes(bytes.to_vec())
    }
}

/// A UUID is a text key in its hyphenated form, as it serialises in a document.
impl From<uuid::Uuid> for KeyValue {
    fn from(id: uuid::Uuid) -> Self {
        Self::Text(id.to_string())
    }
}

/// An unchecked float: calls check it (use [`KeyValue::float`] to check it at once).
impl From<f64> for KeyValue {
    fn from(float: f64) -> Self {
        Self::Float(if float == 0.0 { 0.0 } else { float })
    }
}

/// The key of one record: its partition key, and its sort key when the table has one.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RecordKey {
    /// The partition key.
    pub partition: KeyValue,
    /// The sort key, for tables that have one.
    pub sort: Option<KeyValue>,
}

impl RecordKey {
    /// The key of a record in a table without a sort key.
    pub fn new(partition: impl Into<KeyValue>) -> Self {
        Self {
            partition: partition.into(),
            sort: None,
        }
    }

    /// The key of a record in a table with a sort key.
    pub fn with_sort(partition: impl Into<KeyValue>, sort: impl Into<KeyValue>) -> Self {
        Self {
            partition: partition.into(),
            sort: Some(sort.into()),
        }
    }
}

impl<T: Into<KeyValue>> From<T> for RecordKey {
    fn from(partition: T) -> Self {
        Self::new(partition)
    }
}

/// Bytes as standard base64 text in serde's data model, for key values and condition operands.
pub(super) mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(in crate::table) fn serialize<S: Serializer>(
        bytes: &[u8],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(in crate::table) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_has_its_own_order() {
        assert!(KeyValue::from("B") < KeyValue::from("a"));
        assert!(KeyValue::from("z") < KeyValue::from("é"));
        assert!(
            KeyValue::from(i64::MIN) < KeyValue::from(-1) && KeyValue::from(9) < KeyValue::from(10)
        );
        assert!(KeyValue::from(vec![0x7f]) < KeyValue::from(vec![0x80]));
        assert!(
            KeyValue::from(-1.5) < KeyValue::from(-0.0)
                && KeyValue::from(0.0) == KeyValue::from(-0.0)
        );
    }

    #[test]
    fn fields_are_read_as_their_declared_type() {
        let read = |kind, value: Value| KeyValue::from_field(kind, "f", Some(&value));
        assert_eq!(
            read(KeyType::Int, 3.into()).ok().flatten(),
            Some(KeyValue::Int(3))
        );
        assert_eq!(
            read(KeyType::Float, 3.into()).ok().flatten(),
            Some(KeyValue::Float(3.0))
        );
        assert_eq!(
            read(KeyType::Bytes, "AAE=".into()).ok().flatten(),
            Some(KeyValue::Bytes(vec![0, 1]))
        );
        assert!(read(KeyType::Int, 0.5.into()).is_err());
        // A float key holds an integer only if an f64 holds it exactly.
        let refused = |value: Value| match read(KeyType::Float, value) {
            Err(Error::InvalidInput { what, why }) => what == "document" && why.contains("\"f\""),
            _ => false,
        };
        const PAST: i64 = (1 << 53) + 1;
        assert!(refused(PAST.into()));
        assert!(refused(i64::MAX.into()));
        assert!(refused((i64::MIN + 1).into()));
        assert!(refused(u64::MAX.into()));
        assert!(refused(1_733_500_000_123_456_789_i64.into()));
        assert_eq!(
            read(KeyType::Float, (1_i64 << 60).into()).ok().flatten(),
            Some(KeyValue::Float(2f64.powi(60)))
        );
        assert_eq!(
            read(KeyType::Float, i64::MIN.into()).ok().flatten(),
            Some(KeyValue::Float(-(2f64.powi(63))))
        );
        // What an older storekit stored still reads, as the nearest float it always read as.
        let stored = KeyValue::from_stored_field(KeyType::Float, "f", Some(&PAST.into()));
        assert_eq!(stored.ok().flatten(), Some(KeyValue::Float(2f64.powi(53))));
        assert_eq!(
            read(KeyType::Float, 10_000_000_000_000_000_000_u64.into())
                .ok()
                .flatten(),
            Some(KeyValue::Float(1e19))
        );
        assert!(read(KeyType::Text, 1.into()).is_err());
        assert!(read(KeyType::Text, "".into()).is_err());
        assert!(read(KeyType::Bytes, "not base64!".into()).is_err());
        assert!(matches!(read(KeyType::Text, Value::Null), Ok(None)));
    }

    #[test]
    fn floats_outside_what_every_backend_stores_are_refused() {
        assert!(KeyValue::float(f64::NAN).is_err());
        assert!(KeyValue::float(f64::INFINITY).is_err());
        assert!(KeyValue::float(1e130).is_err());
        assert!(KeyValue::float(1e-131).is_err());
        assert_eq!(
            KeyValue::float(-0.0).ok().map(|k| k.to_json()),
            Some(Value::from(0))
        );
        assert_eq!(
            KeyValue::float(2.0).ok().map(|k| k.to_json()),
            Some(Value::from(2))
        );
    }
}
