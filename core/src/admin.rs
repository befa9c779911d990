//! Administering a store: [`Admin`] (migrate, compare the live schema with the code, drop,
//! dump), which every backend implements, and what the `storekit` command reports about a
//! database and renders from the code: the outcome of a migration, the differences between a
//! live database and what the code expects, and the options of a schema export. Each backend
//! fills these from the same definitions it executes, so a report or an export cannot drift
//! from what the backend does.

use async_trait::async_trait;

use crate::{IdKind, Result};

/// What a backend does to the database as a whole rather than to what it holds: create or
/// upgrade its tables, compare them with the code, drop them, and render everything stored
/// for a test. Every backend implements it (the in-memory store, which has no schema, as
/// no-ops, except [`Admin::dump`]); it is part of [`Store`](crate::Store), so a connected
/// store is administered the same way whatever its backend.
///
/// ```
/// use std::sync::Arc;
/// use storekit_core::{DynStore, KvStore as _, MemoryStore};
///
/// # async fn run() -> storekit_core::Result<()> {
/// let store: Arc<DynStore> = Arc::new(MemoryStore::new());
/// store.migrate().await?; // at start-up, on any backend
/// assert!(store.schema_differences().await?.is_empty());
/// let kv: Arc<dyn storekit_core::KvStore> = store.clone(); // every store of it, by upcasting
/// kv.set("sessions", "abc", b"ada", None).await?;
/// assert!(store.dump().await?.contains("sessions abc"));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
/// ```
#[async_trait]
pub trait Admin: std::fmt::Debug + Send + Sync + 'static {
    /// Creates or upgrades what the store needs (tables, indexes, TTL settings); idempotent
    /// and safe to run at every start, concurrently. [`Admin::migrate_report`] without the
    /// report.
    async fn migrate(&self) -> Result<()> {
        self.migrate_report().await.map(drop)
    }

    /// What [`Admin::migrate`] does, reporting each object (table, index, TTL setting,
    /// migration step) as created by this call or already present: what `storekit migrate`
    /// prints.
    async fn migrate_report(&self) -> Result<MigrationReport>;

    /// How the live database differs from what this code expects, without changing anything:
    /// the store's own tables (keys, columns, indexes, TTL) and every table the tables
    /// store's catalog records. Empty when they agree; what `storekit schema check` prints.
    async fn schema_differences(&self) -> Result<Vec<SchemaDifference>>;

    /// The query indexes of the catalog's tables that their schemas do not declare (another
    /// client's global secondary indexes on an adopted DynamoDB table): left alone, so never
    /// a difference, and listed by `storekit schema check`. Stores that keep no such index
    /// (SQL and memory forget one in `ensure_table`) list none.
    async fn undeclared_indexes(&self) -> Result<Vec<SchemaDifference>> {
        Ok(Vec::new())
    }

    /// Drops every table of this store (its prefix only), the tables store's included, and
    /// everything in them: for tests and teardown. Missing tables are not an error.
    async fn drop_tables(&self) -> Result<()>;

    /// Everything the store holds, rendered as text, for tests that check what is (and is
    /// not) stored, such as that no access token is stored in the clear. It reads every
    /// table: not for production use. Unlike `Debug`, it shows values and hashes.
    async fn dump(&self) -> Result<String>;
}

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
