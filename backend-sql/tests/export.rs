//! The SQL export is what the stores create: applied to an empty database it gives the same
//! catalog as `migrate()` and `ensure_table`, after which `migrate_report()` creates nothing,
//! `ensure_table` finds every table as declared and `schema_differences()` finds nothing;
//! a dropped index or a changed column is then listed.

mod common;

use storekit_core::IdKind;
use storekit_core::admin::{ExportOptions, SchemaDifference};
use storekit_core::table::{KeyDef, TableSchema, TableStatus, TableStore};

fn things() -> TableSchema {
    TableSchema::builder("things", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .index("by-name", KeyDef::text("name"), None)
        .unique("pair", [KeyDef::text("a"), KeyDef::float("b")])
        .build()
        .expect("valid schema")
}

fn events() -> TableSchema {
    TableSchema::builder("events", KeyDef::bytes("stream"))
        .sort_key(KeyDef::int("at"))
        .build()
        .expect("valid schema")
}

fn options(kind: IdKind) -> ExportOptions {
    ExportOptions::default().prefix("app_").id_kind(kind)
}

/// Whether `found` names `object` with a difference that mentions `about`.
fn lists(found: &[SchemaDifference], object: &str, about: &str) -> bool {
    found
        .iter()
        .any(|d| d.object == object && d.difference.contains(about))
}

#[cfg(feature = "sqlite")]
#[test]
fn a_script_has_a_header_and_ends_each_statement() {
    let script =
        storekit_sql::export::sqlite(&options(IdKind::Uuid), &[&things()]).expect("export");
    assert!(
        script.starts_with("-- storekit schema for SQLite"),
        "{script}"
    );
    assert!(script.ends_with(";\n"));
    assert!(script.contains("INSERT INTO \"app_storekit_tables\" (name, shape) VALUES ('things'"));
    assert!(script.contains("'schema_version'"));
    let refused = storekit_sql::export::sqlite(&ExportOptions::default().prefix("bad-prefix"), &[]);
    assert!(refused.is_err());
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;

    use rusqlite::Connection;
    use storekit_sql::{SqliteConfig, SqliteStore};

    use super::*;

    struct TempDb(PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("storekit-export-{name}-{}.db", std::process::id()));
            let db = Self(path);
            db.remove();
            db
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }

    async fn open(db: &TempDb, kind: IdKind) -> SqliteStore {
        let config = SqliteConfig::file(&db.0).table_prefix("app_").id_kind(kind);
        SqliteStore::connect(&config).await.expect("open")
    }

    /// Every object of the database with its text, whitespace normalised.
    fn catalogue(db: &TempDb) -> Vec<(String, String, String)> {
        let conn = Connection::open(&db.0).expect("open");
        let mut stmt = conn
            .prepare("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |row| {
            let sql: String = row.get(2)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                sql.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .and_then(|rows| rows.collect())
        .expect("catalogue")
    }

    #[tokio::test]
    async fn the_export_creates_what_migrate_and_ensure_table_create() {
        for kind in [IdKind::Uuid, IdKind::Int] {
            let (made, exported) = (TempDb::new("made"), TempDb::new("exported"));
            let store = open(&made, kind).await;
            store.migrate().await.expect("migrate");
            for schema in [things(), events()] {
                store.ensure_table(&schema).await.expect("ensure");
            }
            assert!(store.schema_differences().await.expect("check").is_empty());
            drop(store);
            let script = storekit_sql::export::sqlite(&options(kind), &[&things(), &events()])
                .expect("export");
            Connection::open(&exported.0)
                .expect("open")
                .execute_batch(&script)
                .expect("the script runs");
            let made_catalogue = catalogue(&made);
            assert!(
                made_catalogue
                    .iter()
                    .any(|(_, name, _)| name == "app_things:pair")
            );
            assert_eq!(catalogue(&exported), made_catalogue, "{kind:?}");

            let store = open(&exported, kind).await;
            let report = store.migrate_report().await.expect("migrate");
            assert!(report.created.is_empty(), "{report:?}");
            assert!(
                report.present.iter().any(|o| o == "table \"app_users\""),
                "{report:?}"
            );
            assert!(
                report.present.iter().any(|o| o == "migration 2"),
                "{report:?}"
            );
            for schema in [things(), events()] {
                let status = store.ensure_table(&schema).await.expect("ensure");
                assert_eq!(status, TableStatus::Unchanged);
            }
            let found = store.schema_differences().await.expect("check");
            assert!(found.is_empty(), "{found:?}");
        }
    }

    #[tokio::test]
    async fn a_dropped_index_or_a_renamed_column_is_listed() {
        let db = TempDb::new("drift");
        let store = open(&db, IdKind::Uuid).await;
        store.migrate().await.expect("migrate");
        store.ensure_table(&things()).await.expect("ensure");
        drop(store);
        Connection::open(&db.0)
            .expect("open")
            .execute_batch(
                "DROP INDEX \"app_things:by-name\"; \
                 ALTER TABLE app_kv RENAME COLUMN value TO contents;",
            )
            .expect("drift");
        let store = open(&db, IdKind::Uuid).await;
        let found = store.schema_differences().await.expect("check");
        assert!(
            lists(
                &found,
                "table \"app_things\"",
                "index \"app_things:by-name\" missing"
            ),
            "{found:?}"
        );
        assert!(
            lists(&found, "table \"app_kv\"", "column \"value\" missing"),
            "{found:?}"
        );
        assert!(
            lists(
                &found,
                "table \"app_kv\"",
                "column \"contents\" is not expected"
            ),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn a_database_never_migrated_lists_its_missing_tables() {
        let config = SqliteConfig::memory().table_prefix("app_");
        let store = SqliteStore::connect(&config).await.expect("open");
        let found = store.schema_differences().await.expect("check");
        for table in [
            "app_users",
            "app_oauth_accounts",
            "app_access_tokens",
            "app_kv",
            "app_storekit_meta",
        ] {
            assert!(
                lists(&found, &format!("table {table:?}"), "missing"),
                "{table}: {found:?}"
            );
        }
        let report = store.migrate_report().await.expect("migrate");
        assert!(report.present.is_empty(), "{report:?}");
        assert!(
            report.created.iter().any(|o| o == "index \"app_kv_key\""),
            "{report:?}"
        );
        assert!(
            report.created.iter().any(|o| o == "migration 1"),
            "{report:?}"
        );
        assert!(store.schema_differences().await.expect("check").is_empty());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use storekit_sql::{PostgresConfig, PostgresStore};

    use super::*;

    async fn store(url: &str, schema: &str, kind: IdKind) -> PostgresStore {
        let config = PostgresConfig::from_url(url)
            .expect("url")
            .schema(schema)
            .table_prefix("app_")
            .id_kind(kind)
            .max_connections(2);
        PostgresStore::connect(&config).await.expect("connect")
    }

    /// The columns and indexes of `schema`, with its name taken out of index definitions.
    async fn catalogue(
        pool: &sqlx::PgPool,
        schema: &str,
    ) -> (Vec<Vec<String>>, Vec<(String, String)>) {
        let columns: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
             COALESCE(collation_name::text, ''), is_identity::text \
             FROM information_schema.columns WHERE table_schema = $1 \
             ORDER BY table_name, ordinal_position",
        )
        .bind(schema)
        .fetch_all(pool)
        .await
        .expect("columns");
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = $1 \
             ORDER BY indexname",
        )
        .bind(schema)
        .fetch_all(pool)
        .await
        .expect("indexes");
        let columns = columns
            .into_iter()
            .map(|(a, b, c, d, e, f)| vec![a, b, c, d, e, f])
            .collect();
        let indexes = indexes
            .into_iter()
            .map(|(name, def)| (name, def.replace(&format!(" {schema}."), " ")))
            .collect();
        (columns, indexes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_export_creates_what_migrate_and_ensure_table_create() {
        let Some(url) = common::postgres_url() else {
            return;
        };
        let made_schema = format!("export_made_{}", std::process::id());
        let exported_schema = format!("export_applied_{}", std::process::id());
        let made = store(&url, &made_schema, IdKind::Int).await;
        let pool = made.pool().clone();
        for schema in [&made_schema, &exported_schema] {
            common::drop_schema(&pool, schema).await.ok();
        }
        made.migrate().await.expect("migrate");
        for schema in [things(), events()] {
            made.ensure_table(&schema).await.expect("ensure");
        }
        let found = made.schema_differences().await.expect("check");
        assert!(found.is_empty(), "{found:?}");

        let script = storekit_sql::export::postgres(&options(IdKind::Int), &[&things(), &events()])
            .expect("export");
        let applied = format!(
            "BEGIN; CREATE SCHEMA \"{exported_schema}\"; \
             SET LOCAL search_path TO \"{exported_schema}\";\n{script}COMMIT;"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(applied))
            .execute(&pool)
            .await
            .expect("the script runs");
        let (made_columns, made_indexes) = catalogue(&pool, &made_schema).await;
        assert!(
            made_indexes
                .iter()
                .any(|(name, _)| name == "app_things:pair")
        );
        assert_eq!(
            catalogue(&pool, &exported_schema).await,
            (made_columns, made_indexes)
        );

        let exported = store(&url, &exported_schema, IdKind::Int).await;
        let report = exported.migrate_report().await.expect("migrate");
        assert!(report.created.is_empty(), "{report:?}");
        for schema in [things(), events()] {
            let status = exported.ensure_table(&schema).await.expect("ensure");
            assert_eq!(status, TableStatus::Unchanged);
        }
        let found = exported.schema_differences().await.expect("check");
        assert!(found.is_empty(), "{found:?}");

        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP INDEX \"{exported_schema}\".\"app_things:by-name\"; \
             ALTER TABLE \"{exported_schema}\".app_kv ALTER COLUMN expires_at TYPE integer"
        )))
        .execute(&pool)
        .await
        .expect("drift");
        let found = exported.schema_differences().await.expect("check");
        assert!(
            lists(
                &found,
                "table \"app_things\"",
                "index \"app_things:by-name\" missing"
            ),
            "{found:?}"
        );
        assert!(
            lists(
                &found,
                "table \"app_kv\"",
                "column \"expires_at\" is integer"
            ),
            "{found:?}"
        );

        for schema in [&made_schema, &exported_schema] {
            common::drop_schema(&pool, schema).await.expect("drop");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_never_migrated_lists_its_missing_tables() {
        let Some(url) = common::postgres_url() else {
            return;
        };
        let schema = format!("export_never_{}", std::process::id());
        let store = store(&url, &schema, IdKind::Uuid).await;
        common::drop_schema(store.pool(), &schema).await.ok();
        let found = store.schema_differences().await.expect("check");
        assert!(lists(&found, "table \"app_users\"", "missing"), "{found:?}");
        let report = store.migrate_report().await.expect("migrate");
        assert!(
            report
                .created
                .iter()
                .any(|o| o == &format!("schema {schema:?}")),
            "{report:?}"
        );
        assert!(store.schema_differences().await.expect("check").is_empty());
        common::drop_schema(store.pool(), &schema)
            .await
            .expect("drop");
    }
}
