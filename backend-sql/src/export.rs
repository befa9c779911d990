//! SQL scripts of exactly what the stores create: `storekit schema --format sql`.
//!
//! A script holds the statements `migrate()` runs on an empty database (its meta table,
//! every migration, and the meta rows that record them, so that `migrate()` afterwards has
//! nothing to do), then the tables store's catalog and, for each given table, the statements
//! `ensure_table` runs and its catalog row, so that `ensure_table` afterwards finds the table
//! as declared. The statements are the stores' own texts, not a description of them: the
//! migrations' and the table layouts' (`crate::table_layout`), rendered for the options'
//! prefix and id kind, with values spliced in as literals where a store would bind them.

use storekit_core::Result;
use storekit_core::admin::ExportOptions;
use storekit_core::table::TableSchema;

use crate::ddl;
use crate::dialect::Dialect;
use crate::table_layout::{Catalog, Layout};
use crate::tables::Tables;

/// The SQLite script that creates what [`SqliteStore`](crate::SqliteStore)'s `migrate()`
/// (with `options.stores`) and `ensure_table` of each of `tables` create, for the options'
/// prefix and id kind. Fails on a prefix or table name the store would refuse.
#[cfg(feature = "sqlite")]
pub fn sqlite(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
    render(Dialect::Sqlite, options, tables)
}

/// The PostgreSQL script that creates what [`PostgresStore`](crate::PostgresStore)'s
/// `migrate()` (with `options.stores`) and `ensure_table` of each of `tables` create, for the
/// options' prefix and id kind, in the connection's default schema. Fails on a prefix or
/// table name the store would refuse.
#[cfg(feature = "postgres")]
pub fn postgres(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
    render(Dialect::Postgres, options, tables)
}

fn render(dialect: Dialect, options: &ExportOptions, schemas: &[&TableSchema]) -> Result<String> {
    let tables = Tables::new(None, &options.prefix)?;
    let parts = Parts {
        stores: options.stores,
        catalog: true,
    };
    let statements = statements(dialect, &tables, options.id_kind, parts, schemas)?;
    let name = dialect.title();
    let mut script = format!(
        "-- storekit schema for {name} (prefix {:?}, {} user ids): what migrate() and \
         ensure_table create.\n",
        options.prefix,
        options.id_kind.as_str()
    );
    script.push_str(&join(&statements));
    Ok(script)
}

/// Which parts of the schema [`statements`] renders, besides the given tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts {
    /// What `migrate()` creates.
    pub(crate) stores: bool,
    /// The tables store's catalog, even with no tables.
    pub(crate) catalog: bool,
}

/// The statements that create `parts` and `schemas` in a store named by `tables`, in the
/// order the stores run them.
pub(crate) fn statements(
    dialect: Dialect,
    tables: &Tables,
    kind: storekit_core::IdKind,
    parts: Parts,
    schemas: &[&TableSchema],
) -> Result<Vec<String>> {
    let mut statements = Vec::new();
    if parts.stores {
        statements.extend(ddl::migrations(dialect).script(tables, kind)?);
    }
    if parts.catalog || !schemas.is_empty() {
        statements.push(Catalog::new(dialect, tables).create);
    }
    for schema in schemas {
        statements.extend(Layout::new(dialect, tables, schema)?.create());
        statements.push(Catalog::insert_row(dialect, tables, schema)?);
    }
    Ok(statements)
}

/// One script of `statements` (each of which may hold several), each ended by `;\n`.
pub(crate) fn join(statements: &[String]) -> String {
    let mut script = String::new();
    for statement in statements {
        script.push_str(statement.trim().trim_end_matches(';'));
        script.push_str(";\n");
    }
    script
}
