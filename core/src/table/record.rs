//! Record types that carry their table's declaration: what `#[derive(storekit::Record)]`
//! (the `storekit-derive` crate, re-exported by the `storekit` facade) implements.
//!
//! [`RecordType`] gives the type's [`TableSchema`]; [`KeyField`] says which Rust types a key
//! field may have and which [`KeyType`] each one is stored as, so that a field's Rust type
//! picks its key type and a type that cannot be a key is a compile error; [`TtlField`] does the
//! same for the field records expire by. The derive's own docs (`storekit::Record`) describe its
//! attributes.
//!
//! A type can also implement [`RecordType`] by hand:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use storekit_core::table::{KeyDef, RecordType, TableSchema};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Session {
//!     id: String,
//!     expires_at: i64,
//! }
//!
//! impl RecordType for Session {
//!     fn schema() -> TableSchema {
//!         TableSchema::builder("sessions", KeyDef::text("id"))
//!             .ttl("expires_at")
//!             .build()
//!             .expect("a valid schema")
//!     }
//! }
//!
//! assert_eq!(Session::schema().ttl(), Some("expires_at"));
//! ```

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeyType, KeyValue, Table, TableSchema, TableStore};

/// A record type whose table is declared on the type: `#[derive(storekit::Record)]`
/// implements it from the type's `#[storekit(...)]` attribute.
pub trait RecordType {
    /// The table's schema. A derived schema is checked when the type is compiled, by the
    /// rules [`TableSchemaBuilder::build`](super::TableSchemaBuilder::build) applies.
    fn schema() -> TableSchema;

    /// The table of these records in `store`: `Table::new(store, Self::schema())`.
    fn table(store: Arc<dyn TableStore>) -> Table<Self>
    where
        Self: Serialize + DeserializeOwned + Send + Sized + 'static,
    {
        Table::new(store, Self::schema())
    }
}

/// A Rust type a key field may have: the [`KeyType`] its values are stored as, and how a
/// value given to a typed key or query (its [`KeyField::Arg`]) becomes a [`KeyValue`].
///
/// Text: `String`, `str`, `Box<str>`, `Rc<str>`, `Arc<str>`, `Cow<str>`, `Uuid` (hyphenated,
/// as it serialises). Integers: `i8` to `i64` and `u8` to `u32` (keys are 64-bit signed; a
/// `u64` could hold values no backend's key can). Floats: `f64`, `f32`. Bytes: `Vec<u8>`,
/// `Box<[u8]>`, `[u8]`, which the document holds as standard base64 text, so the field needs
/// `#[serde(with = "storekit::table::record::base64")]`. A reference to one of these, and an
/// `Option` of one (for index keys and unique components: a record without the value is not in
/// the index), have the same key type.
///
/// Implement it for a newtype of your own to use it as a key:
///
/// ```
/// use storekit_core::table::{KeyField, KeyType, KeyValue};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[serde(transparent)]
/// struct Sku(String);
///
/// impl KeyField for Sku {
///     const KEY_TYPE: KeyType = KeyType::Text;
///     type Arg<'a> = &'a Sku;
///     fn key_value(sku: &Sku) -> KeyValue {
///         KeyValue::from(sku.0.as_str())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the type of a storekit key field",
    label = "not a key type",
    note = "a key field is text (`String`, `&str`, `Uuid`), an integer (`i8` to `i64`, `u8` to `u32`), a float (`f64`, `f32`) or bytes (`Vec<u8>`), or an `Option` of one in an index; implement `KeyField` for a newtype of your own"
)]
pub trait KeyField {
    /// The key type a field of this type is stored as.
    const KEY_TYPE: KeyType;
    /// What a typed key or query takes for this field (`&str` for a `String` field).
    type Arg<'a>;
    /// The key value of `arg`, as the field's value serialises into the document.
    fn key_value(arg: Self::Arg<'_>) -> KeyValue;
}

macro_rules! text_keys {
    ($($t:ty),*) => {$(
        impl KeyField for $t {
            const KEY_TYPE: KeyType = KeyType::Text;
            type Arg<'a> = &'a str;
            fn key_value(text: &str) -> KeyValue {
                KeyValue::from(text)
            }
        }
    )*};
}
text_keys!(String, str, Box<str>, Rc<str>, Arc<str>, Cow<'_, str>);

impl KeyField for uuid::Uuid {
    const KEY_TYPE: KeyType = KeyType::Text;
    type Arg<'a> = uuid::Uuid;
    fn key_value(id: uuid::Uuid) -> KeyValue {
        KeyValue::from(id)
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl KeyField for $t {
            const KEY_TYPE: KeyType = KeyType::Int;
            type Arg<'a> = $t;
            fn key_value(int: $t) -> KeyValue {
                KeyValue::Int(i64::from(int))
            }
        }
    )*};
}
int_keys!(i8, i16, i32, i64, u8, u16, u32);

impl KeyField for f64 {
    const KEY_TYPE: KeyType = KeyType::Float;
    type Arg<'a> = f64;
    fn key_value(float: f64) -> KeyValue {
        KeyValue::from(float)
    }
}

impl KeyField for f32 {
    const KEY_TYPE: KeyType = KeyType::Float;
    type Arg<'a> = f32;
    // Widened exactly, as serde_json widens an `f32` field when a record is serialised, so
    // the key finds the record whose field holds the same `f32`.
    fn key_value(float: f32) -> KeyValue {
        KeyValue::from(f64::from(float))
    }
}

macro_rules! bytes_keys {
    ($($t:ty),*) => {$(
        impl KeyField for $t {
            const KEY_TYPE: KeyType = KeyType::Bytes;
            type Arg<'a> = &'a [u8];
            fn key_value(bytes: &[u8]) -> KeyValue {
                KeyValue::from(bytes)
            }
        }
    )*};
}
bytes_keys!(Vec<u8>, Box<[u8]>, [u8]);

impl<T: KeyField + ?Sized> KeyField for &T {
    const KEY_TYPE: KeyType = T::KEY_TYPE;
    type Arg<'a> = T::Arg<'a>;
    fn key_value(arg: T::Arg<'_>) -> KeyValue {
        T::key_value(arg)
    }
}

/// A record without the value is not in the index (or not constrained by the unique index).
impl<T: KeyField> KeyField for Option<T> {
    const KEY_TYPE: KeyType = T::KEY_TYPE;
    type Arg<'a> = T::Arg<'a>;
    fn key_value(arg: T::Arg<'_>) -> KeyValue {
        T::key_value(arg)
    }
}

/// A Rust type the field records expire by may have: a number of Unix seconds (see
/// [`TableSchemaBuilder::ttl`](super::TableSchemaBuilder::ttl)), or an `Option` of one (a
/// record without it never expires).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a record's expiry",
    label = "not a number of seconds",
    note = "a ttl field holds Unix seconds: an integer or a float (`i64`, `u64`, `f64`, ...), or an `Option` of one"
)]
pub trait TtlField {}

macro_rules! ttl_fields {
    ($($t:ty),*) => {$( impl TtlField for $t {} )*};
}
ttl_fields!(i32, i64, u32, u64, f32, f64);
impl<T: TtlField> TtlField for Option<T> {}

/// Bytes as standard, padded base64 text, as a bytes key field must serialise:
/// `#[serde(with = "storekit::table::record::base64")]` on a `Vec<u8>` field (or an
/// `Option<Vec<u8>>` one, through [`base64::option`]).
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Blob {
///     #[serde(with = "storekit_core::table::record::base64")]
///     digest: Vec<u8>,
/// }
///
/// let json = serde_json::to_value(Blob { digest: vec![1, 2, 3] })?;
/// assert_eq!(json, serde_json::json!({"digest": "AQID"}));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub mod base64 {
    use ::base64::Engine as _;
    use ::base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `bytes` as base64 text.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads base64 text as bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }

    /// The same for an `Option<Vec<u8>>` field: `None` is `null`.
    pub mod option {
        use serde::{Deserialize as _, Deserializer, Serializer};

        /// Writes `bytes` as base64 text, or `null`.
        pub fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => super::serialize(bytes, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Reads base64 text, or `null`, as bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<Base64>::deserialize(deserializer).map(|b| b.map(|Base64(bytes)| bytes))
        }

        struct Base64(Vec<u8>);

        impl<'de> serde::Deserialize<'de> for Base64 {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::deserialize(deserializer).map(Base64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_value_is_what_the_field_serialises_to() {
        fn stored<T: Serialize>(value: T, kind: KeyType) -> Option<KeyValue> {
            let json = serde_json::to_value(value).ok();
            KeyValue::from_field(kind, "f", json.as_ref())
                .ok()
                .flatten()
        }
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            stored(id, <uuid::Uuid as KeyField>::KEY_TYPE),
            Some(<uuid::Uuid as KeyField>::key_value(id))
        );
        assert_eq!(
            stored(0.1_f32, <f32 as KeyField>::KEY_TYPE),
            Some(<f32 as KeyField>::key_value(0.1))
        );
        assert_eq!(
            stored(u32::MAX, <u32 as KeyField>::KEY_TYPE),
            Some(<Option<u32> as KeyField>::key_value(u32::MAX))
        );
        #[derive(Serialize)]
        struct Blob(#[serde(with = "super::base64")] Vec<u8>);
        assert_eq!(
            stored(Blob(vec![0, 255]), <Vec<u8> as KeyField>::KEY_TYPE),
            Some(<&Vec<u8> as KeyField>::key_value(&[0, 255]))
        );
        assert_eq!(<&str as KeyField>::KEY_TYPE, KeyType::Text);
    }
}
