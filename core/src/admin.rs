//! What the `storekit` command reports about a database and renders from the code: the
//! outcome of a migration, the differences between a live database and what the code expects,
//! and the options of a schema export. Each backend fills these from the same definitions it
//! executes, so a report or an export cannot drift from what the backend does.

use crate::IdKind;

/// What a migration did: each object of the store (table, index, TTL setting, migration
/// step) either created or found already there, named as the database names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Objects the migration created or changed.
    pub created: Vec<String>,
    /// Objects that were already as the code expects.
    pub present: Vec<String>,
}

/// One difference between a live database and what the code expects, e.g. `table
/// "app_users": missing` or `table "products": index "by_name" sort key is updated_at S,
/// expected updated_at N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDifference {
    /// The object that differs, as the database names it.
    pub object: String,
    /// How it differs.
    pub difference: String,
}

impl std::fmt::Display for SchemaDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.difference)
    }
}

/// Options of a schema export (Terraform, CloudFormation, SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The table name prefix, as the store's `prefix=` gives it.
    pub prefix: String,
    /// The kind of user ids, which changes the users table's column types on SQL.
    pub id_kind: IdKind,
    /// Whether to include storekit's own stores (users, OAuth accounts, tokens, key-value),
    /// besides what the given tables need.
    pub stores: bool,
}

impl Default for ExportOptions {
    /// No prefix, UUID ids, storekit's own stores included.
    fn default() -> Self {
        Self {
            prefix: String::new(),
            id_kind: IdKind::Uuid,
            stores: true,
        }
    }
}

impl ExportOptions {
    /// Sets the table name prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the kind of user ids.
    #[must_use]
    pub fn id_kind(mut self, kind: IdKind) -> Self {
        self.id_kind = kind;
        self
    }

    /// Leaves storekit's own stores out: only the given tables and what they need (on
    /// DynamoDB, the unique-marker table, which also holds each table's catalog item).
    #[must_use]
    pub fn tables_only(mut self) -> Self {
        self.stores = false;
        self
    }
}
