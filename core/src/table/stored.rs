//! A record as its backend read it, for typed reads: the document still in the form the
//! database holds it, so that [`Table`](super::Table) reads it straight into its type.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Document, KeyDef, Record, RecordKey};
use crate::{Error, Result};

/// One record as a backend read it: its key, its version and its [`Body`].
///
/// A SQL backend keeps each document as JSON text; [`Table`](super::Table) parses that text
/// once, straight into its own type, where going through a [`Record`] would build a
/// [`Document`] (a map of every field) and then read the map. Backends that hold documents
/// already parsed (memory, DynamoDB) hand back [`Body::Document`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record's key in its table.
    pub key: RecordKey,
    /// Its version, as in [`Record::version`].
    pub version: u64,
    /// Its document.
    pub body: Body,
}

/// A stored document, parsed or as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Already parsed.
    Document(Document),
    /// The JSON text of an object, as the database holds it.
    Text {
        /// The text.
        text: String,
        /// Top-level fields already read from the text, for what pages through records
        /// without reading them whole (keys, index keys); empty if none were read.
        read: Document,
    },
}

impl StoredRecord {
    /// Reads the document as `T`.
    ///
    /// # Errors
    /// The document does not read as `T` (the message names `T`).
    pub fn read<T: DeserializeOwned>(self) -> Result<T> {
        let read = match self.body {
            Body::Document(document) => serde_json::from_value(serde_json::Value::Object(document)),
            Body::Text { text, .. } => serde_json::from_str(&text),
        };
        read.map_err(|e| {
            Error::invalid(
                "record",
                format!("does not read back as {}: {e}", std::any::type_name::<T>()),
            )
        })
    }

    /// The record with its document parsed.
    ///
    /// # Errors
    /// [`Error::Backend`] if the text is not the JSON of an object: the database holds
    /// something storekit did not write.
    pub fn into_record(self, backend: &'static str) -> Result<Record> {
        let document = match self.body {
            Body::Document(document) => document,
            Body::Text { text, .. } => match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(document)) => document,
                Ok(_) => {
                    return Err(Error::backend(
                        backend,
                        "a stored document is not a JSON object",
                    ));
                }
                Err(e) => return Err(Error::backend(backend, e)),
            },
        };
        Ok(Record {
            key: self.key,
            version: self.version,
            document,
        })
    }
}

/// Each key of `keys` once, in the order they first come: what a backend reads for a
/// `get_many` ([`in_key_order`] puts the answer back in the order asked).
#[must_use]
pub fn distinct_keys(keys: &[RecordKey]) -> Vec<&RecordKey> {
    let mut seen = std::collections::HashSet::new();
    keys.iter().filter(|key| seen.insert(*key)).collect()
}

/// The records a backend found for a `get_many` of `keys`, in any order, put in the order of
/// `keys`, repeats included, `None` where none was found.
#[must_use]
pub fn in_key_order(keys: &[RecordKey], found: Vec<StoredRecord>) -> Vec<Option<StoredRecord>> {
    let found: std::collections::HashMap<RecordKey, StoredRecord> = found
        .into_iter()
        .map(|record| (record.key.clone(), record))
        .collect();
    keys.iter().map(|key| found.get(key).cloned()).collect()
}

/// Records of a `get_many` with their documents parsed ([`StoredRecord::into_record`]).
///
/// # Errors
/// The first document that is not the JSON of an object.
pub fn parse_all(
    found: Vec<Option<StoredRecord>>,
    backend: &'static str,
) -> Result<Vec<Option<Record>>> {
    found
        .into_iter()
        .map(|found| found.map(|stored| stored.into_record(backend)).transpose())
        .collect()
}

/// The top-level fields `names` of the JSON object `text`, the others skipped without being
/// built: what a key or a query position needs of a document that is read as text.
///
/// # Errors
/// `text` is not the JSON of an object.
pub fn fields_of(text: &str, names: &[&str]) -> serde_json::Result<Document> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let fields = de::Deserializer::deserialize_map(&mut deserializer, Fields(names))?;
    deserializer.end()?;
    Ok(fields)
}

/// Visits an object, keeping the fields it names.
struct Fields<'n>(&'n [&'n str]);

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Document, A::Error> {
        let mut fields = Document::new();
        while let Some(wanted) = map.next_key_seed(Named(self.0))? {
            match wanted {
                Some(name) => {
                    fields.insert(name.to_owned(), map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A key, compared with the wanted names without being copied: the name it matches, if any.
struct Named<'n>(&'n [&'n str]);

impl<'de, 'n> DeserializeSeed<'de> for Named<'n> {
    type Value = Option<&'n str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'n> Visitor<'_> for Named<'n> {
    type Value = Option<&'n str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|name| *name == key))
    }
}

impl StoredRecord {
    /// The key `def` reads from the document: from its text, only that field is parsed,
    /// unless it was read already.
    pub(crate) fn read_key(
        &self,
        def: &KeyDef,
        backend: &'static str,
    ) -> Result<Option<super::KeyValue>> {
        match &self.body {
            Body::Document(document) => def.read_stored(document),
            Body::Text { read, .. } if read.contains_key(def.field()) => def.read_stored(read),
            Body::Text { text, .. } => {
                let fields =
                    fields_of(text, &[def.field()]).map_err(|e| Error::backend(backend, e))?;
                def.read_stored(&fields)
            }
        }
    }
}

impl From<Record> for StoredRecord {
    fn from(record: Record) -> Self {
        Self {
            key: record.key,
            version: record.version,
            body: Body::Document(record.document),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: String,
        n: i64,
    }

    fn text(text: &str) -> Body {
        Body::Text {
            text: text.to_owned(),
            read: Document::new(),
        }
    }

    fn stored(body: Body) -> StoredRecord {
        StoredRecord {
            key: RecordKey::new("a"),
            version: 2,
            body,
        }
    }

    #[test]
    fn text_and_document_read_alike() {
        let document = json!({"id": "a", "n": 3});
        let text = stored(text(&document.to_string()));
        let parsed = stored(Body::Document(
            document.as_object().cloned().unwrap_or_default(),
        ));
        let want = Item {
            id: "a".into(),
            n: 3,
        };
        assert_eq!(text.clone().read::<Item>().ok(), Some(want));
        assert_eq!(
            text.into_record("test").ok(),
            parsed.clone().into_record("test").ok()
        );
        assert!(parsed.into_record("test").is_ok());
    }

    #[test]
    fn fields_of_keeps_the_named_fields_only() {
        let text = r#"{"a": 1, "b": {"a": 2}, "c\u0041": "x", "e": [1, {"a": 3}], "d": null}"#;
        let fields = fields_of(text, &["a", "cA", "d", "zz"]).ok();
        let want = json!({"a": 1, "cA": "x", "d": null});
        assert_eq!(fields.map(serde_json::Value::Object), Some(want));
        assert!(fields_of("[1]", &["a"]).is_err());
        assert!(fields_of(r#"{"a": 1} 2"#, &["a"]).is_err());
        assert!(fields_of(r#"{"a": "#, &["a"]).is_err());
    }

    #[test]
    fn what_does_not_read_is_an_error_naming_the_type() {
        let wrong = stored(text(r#"{"id": "a", "n": "three"}"#));
        let message = wrong
            .read::<Item>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("Item"), "{message}");
        let not_object = stored(text("[1]"));
        assert!(matches!(
            not_object.into_record("test"),
            Err(Error::Backend { .. })
        ));
        let not_json = stored(text("{"));
        assert!(matches!(
            not_json.into_record("test"),
            Err(Error::Backend { .. })
        ));
    }
}
