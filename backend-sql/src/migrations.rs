//! Deciding what a migration run must do, the same way for both dialects.
//!
//! Each store records two rows in its meta table: the id kind its tables were created for and
//! how many migrations have run. From those, [`plan`] refuses a store opened with the other id
//! kind and renders the migrations still to run; the dialects only execute the plan.

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
