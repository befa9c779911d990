//! The names of storekit's tables, built once per store from a validated prefix and schema.

use storekit_core::Result;
use storekit_core::validate::check_identifier;

/// Fully qualified table names, ready to splice into SQL.
///
/// Identifiers cannot be bound as parameters, so the prefix and schema are checked with
/// [`check_identifier`] here, before any of them reaches a statement.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) users: String,
    pub(crate) oauth: String,
    pub(crate) tokens: String,
    pub(crate) kv: String,
    pub(crate) meta: String,
    /// The bare prefix, for naming indexes and constraints.
    pub(crate) prefix: String,
}

impl Tables {
    pub(crate) fn new(schema: Option<&str>, prefix: &str) -> Result<Self> {
        if !prefix.is_empty() {
            check_identifier("table prefix", prefix)?;
        }
        let qualify = |name: &str| match schema {
            Some(schema) => format!("\"{schema}\".\"{prefix}{name}\""),
            None => format!("\"{prefix}{name}\""),
        };
        if let Some(schema) = schema {
            check_identifier("schema", schema)?;
            // PostgreSQL reserves these names and refuses `CREATE SCHEMA pg_…`.
            if schema.to_ascii_lowercase().starts_with("pg_") {
                return Err(storekit_core::Error::invalid(
                    "schema",
                    format!("{schema:?}: names starting with pg_ are reserved by PostgreSQL"),
                ));
            }
        }
        Ok(Self {
            users: qualify("users"),
            oauth: qualify("oauth_accounts"),
            tokens: qualify("access_tokens"),
            kv: qualify("kv"),
            meta: qualify("storekit_meta"),
            prefix: prefix.to_owned(),
        })
    }

    /// Replaces `{users}`, `{oauth}`, `{tokens}`, `{kv}`, `{meta}` and `{prefix}` in `sql`.
    pub(crate) fn render(&self, sql: &str) -> String {
        sql.replace("{users}", &self.users)
            .replace("{oauth}", &self.oauth)
            .replace("{tokens}", &self.tokens)
            .replace("{kv}", &self.kv)
            .replace("{meta}", &self.meta)
            .replace("{prefix}", &self.prefix)
    }
}
