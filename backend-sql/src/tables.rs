//! The names of storekit's tables, built once per store from a validated prefix and schema.

use storekit_core::Result;
use storekit_core::validate::check_identifier;

/// The catalog of the tables store, after the prefix.
pub(crate) const CATALOG: &str = "storekit_tables";

/// The names, after the prefix, of every table storekit itself keeps (and of the one a past
/// migration used), which a declared table may not take.
const RESERVED: &[&str] = &[
    "users",
    "oauth_accounts",
    "access_tokens",
    "kv",
    "kv_rowid",
    "storekit_meta",
    CATALOG,
];

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
    /// The tables store's catalog: one row per declared table, with its shape.
    pub(crate) catalog: String,
    /// The bare prefix, for naming indexes and constraints.
    pub(crate) prefix: String,
    /// The PostgreSQL schema the tables live in, if not the connection's default.
    schema: Option<String>,
}

impl Tables {
    pub(crate) fn new(schema: Option<&str>, prefix: &str) -> Result<Self> {
        if !prefix.is_empty() {
            check_identifier("table prefix", prefix)?;
        }
        if starts_reserved(prefix) {
            return Err(storekit_core::Error::invalid(
                "table prefix",
                format!("{prefix:?}: names starting with sqlite_ are reserved by SQLite"),
            ));
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
            catalog: qualify(CATALOG),
            prefix: prefix.to_owned(),
            schema: schema.map(str::to_owned),
        })
    }

    /// The names, unquoted and unqualified, of the tables `migrate()` keeps: what the
    /// database's own catalog calls them.
    pub(crate) fn own_bare(&self) -> Vec<String> {
        [
            "users",
            "oauth_accounts",
            "access_tokens",
            "kv",
            "storekit_meta",
        ]
        .iter()
        .map(|name| format!("{}{name}", self.prefix))
        .collect()
    }

    /// The bare name (prefix and name, unquoted) of the meta table and of the catalog.
    pub(crate) fn bare_meta_and_catalog(&self) -> (String, String) {
        (
            format!("{}storekit_meta", self.prefix),
            format!("{}{CATALOG}", self.prefix),
        )
    }

    /// The quoted, qualified name of the table `bare` (a name that already holds the prefix).
    /// Callers pass only names made of validated parts, which never hold a `"`.
    pub(crate) fn qualify_bare(&self, bare: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{bare}\""),
            None => format!("\"{bare}\""),
        }
    }

    /// The quoted, qualified SQL table of the declared table `name`, as read back from the
    /// catalog with its `shape` (JSON), which says whether the table is exact-named (no
    /// prefix); `None` for a name no schema could declare, which is then never spliced.
    pub(crate) fn declared(&self, name: &str, shape: &str) -> Option<String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        let exact = serde_json::from_str::<storekit_core::table::TableShape>(shape)
            .is_ok_and(|shape| shape.exact_name);
        let prefix = if exact { "" } else { self.prefix.as_str() };
        (!name.is_empty() && name.chars().all(allowed))
            .then(|| self.qualify_bare(&format!("{prefix}{name}")))
    }

    /// Whether the table name `bare` (with the prefix) starts with what SQLite keeps for
    /// its own tables, in any case: a prefix and a declared name may make one together.
    pub(crate) fn is_sqlite_reserved(bare: &str) -> bool {
        starts_reserved(bare)
    }

    /// Whether `name`, with the prefix, would be one of storekit's own tables; compared
    /// without case, as SQLite compares identifiers.
    pub(crate) fn is_reserved(name: &str) -> bool {
        RESERVED.iter().any(|own| own.eq_ignore_ascii_case(name))
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

fn starts_reserved(name: &str) -> bool {
    storekit_core::table::RESERVED_TABLE_PREFIXES
        .iter()
        .any(|reserved| {
            name.get(..reserved.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(reserved))
        })
}
