//! The two SQL dialects, and how a statement and its values are put together for either.
//!
//! Everything on the shared floor (the users, OAuth, tokens and kv statements, the tables
//! store's layout, the migrations and the export) is written once and rendered for a
//! [`Dialect`]; the drivers only bind and execute.

use std::fmt::Write as _;
use std::sync::Arc;

use storekit_core::table::{KeyType, KeyValue};

/// The two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub(crate) fn key_type(self, kind: KeyType) -> &'static str {
        match (self, kind) {
            (Self::Sqlite, KeyType::Text) => "TEXT",
            (Self::Sqlite, KeyType::Int) => "INTEGER",
            (Self::Sqlite, KeyType::Bytes) => "BLOB",
            (Self::Sqlite, KeyType::Float) => "REAL",
            (Self::Postgres, KeyType::Text) => "text COLLATE \"C\"",
            (Self::Postgres, KeyType::Int) => "bigint",
            (Self::Postgres, KeyType::Bytes) => "bytea",
            (Self::Postgres, KeyType::Float) => "double precision",
        }
    }

    pub(crate) fn document_type(self) -> &'static str {
        match self {
            Self::Sqlite => "TEXT",
            Self::Postgres => "jsonb",
        }
    }

    pub(crate) fn integer_type(self) -> &'static str {
        match self {
            Self::Sqlite => "INTEGER",
            Self::Postgres => "bigint",
        }
    }

    /// The one name of the database: what errors give as their backend.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The database's OpenTelemetry `db.system.name`, which spans carry.
    pub(crate) fn system(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }

    /// The database's name as people write it, for the header of an exported script.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// `text`, written with SQLite's placeholders (`?N`, and `:name` where SQLite binds by
    /// name), in this dialect's. SQLite's are left as they are; PostgreSQL numbers every
    /// placeholder: `?N` is `$N`, and `:name` is `$i`, `i` the name's place (from 1) in
    /// `names`. Only the statements' own texts are given, before table names are spliced in,
    /// so a `?` or `:` is never part of a name or a literal.
    pub(crate) fn placeholders(self, text: &str, names: &[&str]) -> String {
        if self == Self::Sqlite {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(['?', ':']) {
            let (sigil, after) = (rest.as_bytes()[at], &rest[at + 1..]);
            out.push_str(&rest[..at]);
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            let place = names.iter().position(|known| *known == name);
            match (sigil, place) {
                (b'?', _) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) => {
                    let _ = write!(out, "${name}");
                }
                (b':', Some(place)) => {
                    let _ = write!(out, "${}", place + 1);
                }
                // Not a placeholder (a `::` cast, say): kept as it is.
                _ => out.push_str(&rest[at..=at + end]),
            }
            rest = &after[end..];
        }
        out.push_str(rest);
        out
    }

    pub(crate) fn placeholder(self) -> char {
        match self {
            Self::Sqlite => '?',
            Self::Postgres => '$',
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
    Float(f64),
    /// A NULL in a column of this type.
    Null(KeyType),
    /// A document, as JSON text.
    Document(String),
}

impl From<&KeyValue> for Param {
    fn from(value: &KeyValue) -> Self {
        match value {
            KeyValue::Text(text) => Self::Text(text.clone()),
            KeyValue::Int(int) => Self::Int(*int),
            KeyValue::Bytes(bytes) => Self::Bytes(bytes.clone()),
            KeyValue::Float(float) => Self::Float(*float),
        }
    }
}

/// A statement and its parameters, in the order of their placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// Shared with the layout's cache of texts, so a recurring text is never built again.
    pub(crate) sql: Arc<str>,
    pub(crate) params: Vec<Param>,
    /// Whether the text recurs, so that a driver's statement cache should keep it (false for
    /// a text that changes with the number of values, which would only push out the rest).
    pub(crate) recurs: bool,
}

/// Builds a [`Statement`], numbering placeholders as values are bound.
///
/// Given the statement's text already (from the layout's cache), it only collects the
/// values: the same code then yields the text once and the values on every call, so the two
/// cannot disagree.
pub(crate) struct Builder {
    pub(crate) dialect: Dialect,
    /// The text being built, or the known one.
    sql: Text,
    params: Vec<Param>,
}

#[derive(Debug)]
enum Text {
    Building(String),
    Known(Arc<str>),
}

impl Builder {
    pub(crate) fn new(dialect: Dialect, known: Option<&Arc<str>>) -> Self {
        Self {
            dialect,
            sql: match known {
                Some(text) => Text::Known(Arc::clone(text)),
                None => Text::Building(String::with_capacity(256)),
            },
            params: Vec::new(),
        }
    }

    pub(crate) fn sql(&mut self, text: &str) -> &mut Self {
        if let Text::Building(sql) = &mut self.sql {
            sql.push_str(text);
        }
        self
    }

    /// `columns`, unquoted, separated by commas.
    pub(crate) fn columns(&mut self, columns: &[&str]) -> &mut Self {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.sql(column);
        }
        self
    }

    /// `identifier`, quoted.
    pub(crate) fn quoted(&mut self, identifier: &str) -> &mut Self {
        self.sql("\"").sql(identifier).sql("\"")
    }

    pub(crate) fn bind(&mut self, param: Param) -> &mut Self {
        let cast = matches!(
            (self.dialect, &param),
            (Dialect::Postgres, Param::Document(_))
        );
        self.params.push(param);
        if let Text::Building(sql) = &mut self.sql {
            let _ = write!(sql, "{}{}", self.dialect.placeholder(), self.params.len());
            if cast {
                sql.push_str("::jsonb");
            }
        }
        self
    }

    /// `(a, b) op (?, ?)`, or `a op ?` for one column.
    pub(crate) fn compare(&mut self, columns: &[&str], op: &str, values: Vec<Param>) -> &mut Self {
        let one = columns.len() == 1;
        self.sql(if one { "" } else { "(" });
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.quoted(column);
        }
        self.sql(if one { " " } else { ") " }).sql(op);
        self.sql(if one { " " } else { " (" });
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.bind(value);
        }
        self.sql(if one { "" } else { ")" })
    }

    pub(crate) fn finish(self) -> Statement {
        Statement {
            sql: match self.sql {
                Text::Building(sql) => Arc::from(sql),
                Text::Known(sql) => sql,
            },
            params: self.params,
            recurs: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn postgres_numbers_every_placeholder() {
        let text = "a = ?2 AND b = :ns AND c > :now AND d = ?1 AND e = :ns AND f = x::text";
        assert_eq!(Dialect::Sqlite.placeholders(text, &["now", "ns"]), text);
        assert_eq!(
            Dialect::Postgres.placeholders(text, &["now", "ns"]),
            "a = $2 AND b = $2 AND c > $1 AND d = $1 AND e = $2 AND f = x::text"
        );
    }
}
