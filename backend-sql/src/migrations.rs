//! Deciding what a migration run must do, the same way for both dialects.
//!
//! Each store records two rows in its meta table: the id kind its tables were created for and
//! how many migrations have run. From those, [`plan`] refuses a store opened with the other id
//! kind and renders the migrations still to run; the dialects only execute the plan.

use std::collections::BTreeSet;

use storekit_core::admin::MigrationReport;
use storekit_core::{Error, IdKind, Result};

use crate::tables::Tables;

/// The meta row holding the id kind.
pub(crate) const ID_KIND: &str = "id_kind";
/// The meta row holding how many migrations have run.
pub(crate) const SCHEMA_VERSION: &str = "schema_version";

/// A dialect's column types for user ids: the users table's `id` column definition, and the
/// type of the columns that refer to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdColumns {
    pub(crate) id: &'static str,
    pub(crate) user_ref: &'static str,
}

/// One dialect's migrations, and the meta table that records how many have run: the one
/// source of storekit's own DDL, which `migrate()` runs, `schema_differences()` compares with
/// and the export renders.
#[derive(Debug)]
pub(crate) struct Migrations {
    /// `CREATE TABLE IF NOT EXISTS {meta} ...`, run before anything else.
    pub(crate) meta: &'static str,
    /// The migrations in order (see [`plan`]).
    pub(crate) steps: &'static [&'static str],
    /// The id columns of each id kind.
    pub(crate) id_columns: fn(IdKind) -> IdColumns,
}

impl Migrations {
    /// Plans a run from the meta rows read (see [`plan`]).
    pub(crate) fn plan(
        &self,
        tables: &Tables,
        kind: IdKind,
        stored_kind: Option<String>,
        stored_version: Option<String>,
    ) -> Result<Plan> {
        plan(
            tables,
            self.steps,
            kind,
            (self.id_columns)(kind),
            stored_kind,
            stored_version,
        )
    }

    /// Everything a run on an empty database executes, in order: the meta table, every
    /// migration, and the meta rows it then records (their values spliced in as literals).
    pub(crate) fn script(&self, tables: &Tables, kind: IdKind) -> Result<Vec<String>> {
        let plan = self.plan(tables, kind, None, None)?;
        let mut script = vec![tables.render(self.meta)];
        script.extend(plan.pending);
        script.extend(
            plan.meta
                .iter()
                .map(|(name, value)| upsert_meta(tables, &literal(name), &literal(value))),
        );
        Ok(script)
    }
}

/// What a run did: each object of storekit's own tables (`table "…"`, `index "…"`) found
/// `before` it or made by it, then each migration, run before (the first `done`) or by it.
pub(crate) fn report(
    before: &BTreeSet<String>,
    after: BTreeSet<String>,
    done: usize,
    total: usize,
) -> MigrationReport {
    let mut report = MigrationReport::default();
    for object in after {
        match before.contains(&object) {
            true => report.present.push(object),
            false => report.created.push(object),
        }
    }
    for step in 1..=total {
        let name = format!("migration {step}");
        match step <= done {
            true => report.present.push(name),
            false => report.created.push(name),
        }
    }
    report
}

/// The tables a dump reads, in order: storekit's own, then, when the tables store has
/// `declared` tables, its catalog and those.
pub(crate) fn dumped<'a>(
    tables: &'a Tables,
    declared: &'a [String],
) -> impl Iterator<Item = &'a String> {
    let catalog = (!declared.is_empty()).then_some(&tables.catalog);
    [
        &tables.users,
        &tables.oauth,
        &tables.tokens,
        &tables.kv,
        &tables.meta,
    ]
    .into_iter()
    .chain(catalog)
    .chain(declared)
}

/// The statement that records meta row `name` with `value` (placeholders or literals).
pub(crate) fn upsert_meta(tables: &Tables, name: &str, value: &str) -> String {
    format!(
        "INSERT INTO {} (name, value) VALUES ({name}, {value}) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        tables.meta
    )
}

/// `text` as an SQL string literal (both dialects double a quote inside one).
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What a migration run executes and then records.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The migrations not yet run, rendered for this store's tables and id kind.
    pub(crate) pending: Vec<String>,
    /// The meta rows to write once they have run.
    pub(crate) meta: [(&'static str, String); 2],
}

/// Plans a run of `migrations` from the meta rows read (`None` where a row is absent).
pub(crate) fn plan(
    tables: &Tables,
    migrations: &[&str],
    kind: IdKind,
    columns: IdColumns,
    stored_kind: Option<String>,
    stored_version: Option<String>,
) -> Result<Plan> {
    if let Some(stored) = stored_kind.filter(|stored| stored != kind.as_str()) {
        return Err(Error::invalid(
            "id kind",
            format!(
                "the tables were created for {stored} ids, not {}",
                kind.as_str()
            ),
        ));
    }
    let done: usize = stored_version.and_then(|v| v.parse().ok()).unwrap_or(0);
    let pending = migrations
        .iter()
        .skip(done)
        .map(|migration| {
            tables
                .render(migration)
                .replace("{id}", columns.id)
                .replace("{user_ref}", columns.user_ref)
        })
        .collect();
    Ok(Plan {
        pending,
        meta: [
            (ID_KIND, kind.as_str().to_owned()),
            (SCHEMA_VERSION, migrations.len().to_string()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: IdColumns = IdColumns {
        id: "ID",
        user_ref: "REF",
    };
    const MIGRATIONS: &[&str] = &["one {users} {id}", "two {kv} {user_ref}"];

    #[test]
    fn a_new_store_runs_every_migration() -> Result<()> {
        let tables = Tables::new(None, "app_")?;
        let plan = plan(&tables, MIGRATIONS, IdKind::Int, COLUMNS, None, None)?;
        assert_eq!(plan.pending, ["one \"app_users\" ID", "two \"app_kv\" REF"]);
        assert_eq!(plan.meta[0], (ID_KIND, "int".to_owned()));
        assert_eq!(plan.meta[1], (SCHEMA_VERSION, "2".to_owned()));
        Ok(())
    }

    #[test]
    fn only_migrations_not_yet_run_are_planned() -> Result<()> {
        let tables = Tables::new(None, "")?;
        let done = Some("1".to_owned());
        let plan = plan(
            &tables,
            MIGRATIONS,
            IdKind::Int,
            COLUMNS,
            Some("int".into()),
            done,
        )?;
        assert_eq!(plan.pending, ["two \"kv\" REF"]);
        Ok(())
    }

    #[test]
    fn tables_of_the_other_id_kind_are_refused() -> Result<()> {
        let tables = Tables::new(None, "")?;
        let err = plan(
            &tables,
            MIGRATIONS,
            IdKind::Uuid,
            COLUMNS,
            Some("int".into()),
            None,
        );
        assert!(
            matches!(
                err,
                Err(Error::InvalidInput {
                    what: "id kind",
                    ..
                })
            ),
            "{err:?}"
        );
        Ok(())
    }
}
