//! A record as its backend read it, for typed reads: the document still in the form the
//! database holds it, so that [`Table`](super::Table) reads it straight into its type.

use serde::de::DeserializeOwned;

use super::{Document, Record, RecordKey};
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
    Text(String),
}

impl StoredRecord {
    /// Reads the document as `T`.
    ///
    /// # Errors
    /// The document does not read as `T` (the message names `T`).
    pub fn read<T: DeserializeOwned>(self) -> Result<T> {
        let read = match self.body {
            Body::Document(document) => serde_json::from_value(serde_json::Value::Object(document)),
            Body::Text(text) => serde_json::from_str(&text),
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
            Body::Text(text) => match serde_json::from_str(&text) {
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
        let text = stored(Body::Text(document.to_string()));
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
    fn what_does_not_read_is_an_error_naming_the_type() {
        let wrong = stored(Body::Text(r#"{"id": "a", "n": "three"}"#.into()));
        let message = wrong
            .read::<Item>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("Item"), "{message}");
        let not_object = stored(Body::Text("[1]".into()));
        assert!(matches!(
            not_object.into_record("test"),
            Err(Error::Backend { .. })
        ));
        let not_json = stored(Body::Text("{".into()));
        assert!(matches!(
            not_json.into_record("test"),
            Err(Error::Backend { .. })
        ));
    }
}
