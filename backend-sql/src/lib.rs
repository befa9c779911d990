//! storekit backends for SQLite and PostgreSQL.
//!
//! - [`SqliteStore`] (feature `sqlite`, the default): an embedded database file, or
//!   `sqlite::memory:`, through rusqlite.
//! - [`PostgresStore`] (feature `postgres`): a PostgreSQL server through an sqlx pool.
//!
//! Both implement every storekit trait, keep the same tables (named by an optional prefix, in
//! an optional PostgreSQL schema), enforce uniqueness and cascades with constraints, and map
//! constraint violations from the database's answer, never by reading first. Values are always
//! bound as parameters; table names, the only identifiers spliced into SQL, are validated once
//! when the store is built. `migrate()` creates or upgrades the tables, idempotently; nothing is
//! created at first use.
//!
//! The tables store (`TableStore`) keeps each declared table as a plain SQL table that other
//! tools can read: `{prefix}{name}` with the key in `partition_key` (and `sort_key`), the
//! record's `version`, its canonical `document` (JSON text on SQLite, `jsonb` on PostgreSQL),
//! and for each index typed columns named after it (`{index}:partition` and `{index}:sort`
//! for a query index, `{unique}:1` to `{unique}:4` for a unique index), NULL where the record
//! is not in the index. Text keys are in byte order (BINARY, `COLLATE "C"`). Each query index
//! is a partial B-tree index `{prefix}{name}:{index}`, each unique index a partial UNIQUE
//! index; the catalog `{prefix}storekit_tables` holds every table's shape as JSON. Tables are
//! created by `ensure_table`, not by `migrate()`, and `drop_tables()` drops them too.
//!
//! `storekit copy` reads and writes both stores through the transfer traits (kv items in
//! (namespace, key) byte order with their deadlines, users with their ids and versions,
//! records at their versions), each import one transaction. `migrate_report()` says what a
//! migration created, `schema_differences()` compares the live tables with the statements
//! the code runs, and [`export`] renders those statements as a script.
//!
//! Expired key-value rows are never returned, and a background task owned by the store deletes
//! them every minute (`purge_interval` in the config), in batches, off the request path, so a
//! cache does not grow without bound; `purge_expired` deletes all of them at once.

mod check;
mod chunked;
mod config;
mod continued;
mod ddl;
mod dialect;
pub mod export;
mod kv;
mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
mod purge;
mod rows;
#[cfg(test)]
mod snapshots;
#[cfg(feature = "sqlite")]
mod sqlite;
mod statements;
mod table_layout;
mod tables;
mod violation;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteConfig, SqliteStore};
pub use storekit_core::IdKind;
