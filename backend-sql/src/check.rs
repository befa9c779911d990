//! Comparing a live database with what the code expects, the same way for both dialects.
//!
//! Each dialect applies the expected DDL (`crate::export`) to a scratch database (SQLite in
//! memory, a PostgreSQL schema in a transaction that is rolled back), reads both catalogs
//! into a [`Snapshot`] each, and [`differences`] compares them. Comparing catalogs rather
//! than statement texts means a table grown by `ALTER TABLE` (whose stored text SQLite
//! rewrites) agrees with one created whole, and nothing needs a second description of the
//! schema.

use std::collections::BTreeMap;

use storekit_core::admin::SchemaDifference;
use storekit_core::table::{TableSchema, TableShape};
use storekit_core::{Error, IdKind, Result};

use crate::dialect::Dialect;
use crate::export::{self, Parts};
use crate::migrations;
use crate::tables::Tables;

/// What a database's catalog says about some tables, by table name.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) tables: BTreeMap<String, TableSnapshot>,
}

/// One table: its kind of storage, and its columns, indexes and constraints by name, each
/// described as text that is equal exactly when the two agree.
#[derive(Debug, Default)]
pub(crate) struct TableSnapshot {
    /// How the rows are stored, where the dialect has a choice (SQLite's `WITHOUT ROWID`).
    pub(crate) storage: String,
    pub(crate) columns: BTreeMap<String, String>,
    pub(crate) indexes: BTreeMap<String, String>,
    pub(crate) constraints: BTreeMap<String, String>,
}

impl Snapshot {
    /// The table `name`, added empty if it is not there yet.
    pub(crate) fn table(&mut self, name: &str) -> &mut TableSnapshot {
        self.tables.entry(name.to_owned()).or_default()
    }
}

/// Every way `live` differs from `expected`, for the tables `expected` holds.
pub(crate) fn differences(expected: &Snapshot, live: &Snapshot) -> Vec<SchemaDifference> {
    let mut found = Vec::new();
    for (name, want) in &expected.tables {
        let object = format!("table {name:?}");
        let Some(have) = live.tables.get(name) else {
            found.push(SchemaDifference {
                object,
                difference: "missing".to_owned(),
            });
            continue;
        };
        let mut differ = |difference: String| {
            found.push(SchemaDifference {
                object: object.clone(),
                difference,
            });
        };
        if have.storage != want.storage {
            differ(format!(
                "stored {}, expected {}",
                have.storage, want.storage
            ));
        }
        compare("column", &want.columns, &have.columns, &mut differ);
        compare("index", &want.indexes, &have.indexes, &mut differ);
        compare(
            "constraint",
            &want.constraints,
            &have.constraints,
            &mut differ,
        );
    }
    found
}

fn compare(
    what: &str,
    expected: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
    differ: &mut impl FnMut(String),
) {
    for (name, want) in expected {
        match live.get(name) {
            None => differ(format!("{what} {name:?} missing")),
            Some(have) if have != want => {
                differ(format!("{what} {name:?} is {have}, expected {want}"));
            }
            Some(_) => {}
        }
    }
    for name in live.keys().filter(|name| !expected.contains_key(*name)) {
        differ(format!("{what} {name:?} is not expected"));
    }
}

/// What the database should hold: `dialect`'s statements for what `migrate()` creates for
/// `kind` and for the tables the catalog's `recorded` rows (`None`: no catalog) describe,
/// named as `names` names them; a recorded table that cannot be read is added to `found`.
pub(crate) fn expected_statements(
    dialect: Dialect,
    tables: &Tables,
    names: &Tables,
    kind: IdKind,
    recorded: Option<&[(String, String)]>,
    found: &mut Vec<SchemaDifference>,
) -> Result<Vec<String>> {
    let (_, catalog) = tables.bare_meta_and_catalog();
    let schemas = recorded_schemas(&catalog, recorded.unwrap_or_default(), found);
    let schemas: Vec<&TableSchema> = schemas.iter().collect();
    let parts = Parts {
        stores: true,
        catalog: recorded.is_some(),
    };
    export::statements(dialect, names, kind, parts, &schemas)
}

/// The schemas of the tables the catalog `catalog` records (`rows` of name and shape JSON),
/// by name; a row that names no valid table is a difference of its own.
pub(crate) fn recorded_schemas(
    catalog: &str,
    rows: &[(String, String)],
    found: &mut Vec<SchemaDifference>,
) -> Vec<TableSchema> {
    let mut schemas = Vec::new();
    for (name, json) in rows {
        let schema = serde_json::from_str::<TableShape>(json)
            .map_err(|e| e.to_string())
            .and_then(|shape| TableSchema::from_shape(name, &shape).map_err(|e| e.to_string()));
        match schema {
            Ok(schema) => schemas.push(schema),
            Err(why) => found.push(SchemaDifference {
                object: format!("table {catalog:?}"),
                difference: format!("the row of {name:?} is not a table's shape: {why}"),
            }),
        }
    }
    schemas.sort_by(|a, b| a.name().cmp(b.name()));
    schemas
}

/// The catalog's rows (name, shape JSON) as shapes, ordered by name.
pub(crate) fn shapes(
    rows: Vec<(String, String)>,
    backend: &'static str,
) -> Result<Vec<(String, TableShape)>> {
    let mut shapes = rows
        .into_iter()
        .map(|(name, json)| {
            let shape = serde_json::from_str(&json).map_err(|e| Error::backend(backend, e))?;
            Ok((name, shape))
        })
        .collect::<Result<Vec<_>>>()?;
    shapes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(shapes)
}

/// What the meta table `meta` records, compared with a store of `kind` whose dialect has
/// `total` migrations.
pub(crate) fn meta_differences(
    meta: &str,
    stored_kind: Option<String>,
    stored_version: Option<&str>,
    kind: IdKind,
    total: usize,
) -> Vec<SchemaDifference> {
    let object = || format!("table {meta:?}");
    let mut found = Vec::new();
    if let Some(stored) = stored_kind.filter(|stored| stored != kind.as_str()) {
        found.push(SchemaDifference {
            object: object(),
            difference: format!(
                "{} records {stored} ids, the store uses {}",
                migrations::ID_KIND,
                kind.as_str()
            ),
        });
    }
    let done = stored_version
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if done != total {
        found.push(SchemaDifference {
            object: object(),
            difference: format!("{done} of {total} migrations recorded as run"),
        });
    }
    found
}

/// `sql` with every run of whitespace made one space, so texts compare by their tokens.
pub(crate) fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_difference_is_named() {
        let mut expected = Snapshot::default();
        let table = expected.table("t");
        table.columns.insert("a".into(), "TEXT NOT NULL".into());
        table.columns.insert("b".into(), "INTEGER".into());
        table
            .indexes
            .insert("t_a".into(), "CREATE INDEX t_a ON t (a)".into());
        expected.table("gone");
        let mut live = Snapshot::default();
        let table = live.table("t");
        table.columns.insert("a".into(), "INTEGER NOT NULL".into());
        table.columns.insert("c".into(), "TEXT".into());
        let found: Vec<String> = differences(&expected, &live)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "table \"gone\": missing",
                "table \"t\": column \"a\" is INTEGER NOT NULL, expected TEXT NOT NULL",
                "table \"t\": column \"b\" missing",
                "table \"t\": column \"c\" is not expected",
                "table \"t\": index \"t_a\" missing",
            ]
        );
    }
}
