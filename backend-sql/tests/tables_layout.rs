//! What the conformance suite cannot see of the tables store: the SQL it leaves behind for
//! people and tools to read (columns, their types and collations, indexes, the catalog), a
//! unique index that cannot be built changing nothing, and the store's own `drop_tables` and
//! `dump` covering its tables.

mod common;

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{Document, KeyDef, TableSchema, TableStatus, TableStore};

fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A text key, a query index on (group, rank), a sparse one on name, a unique (a, b) pair.
fn things() -> TableSchema {
    TableSchema::builder("things", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .index("by-name", KeyDef::text("name"), None)
        .unique("pair", [KeyDef::text("a"), KeyDef::float("b")])
        .build()
        .expect("valid schema")
}

/// `grown` without indexes, then with a unique index on `code`.
fn grown(unique: bool) -> TableSchema {
    let builder = TableSchema::builder("grown", KeyDef::text("id"));
    let builder = if unique {
        builder
            .index("by-code", KeyDef::int("code"), None)
            .unique("code", [KeyDef::int("code")])
    } else {
        builder
    };
    builder.build().expect("valid schema")
}

/// Two records share a code: the unique index cannot be built, and the table is left as it
/// was, its catalog shape included; the records are all still there.
async fn a_duplicate_while_adding_a_unique_index_changes_nothing(store: &dyn TableStore) {
    store.ensure_table(&grown(false)).await.expect("ensure");
    for (id, code) in [("a", 1), ("b", 2), ("c", 1), ("d", 3)] {
        store
            .insert(&grown(false), doc(json!({"id": id, "code": code})))
            .await
            .expect("insert");
    }
    let refused = store.ensure_table(&grown(true)).await;
    assert!(
        matches!(
            refused,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.ensure_table(&grown(false)).await.expect("as before"),
        TableStatus::Unchanged
    );
    assert_eq!(store.count(&grown(false)).await.expect("count"), 4);
    store
        .delete(&grown(false), &"c".into(), None)
        .await
        .expect("delete");
    assert_eq!(
        store.ensure_table(&grown(true)).await.expect("now unique"),
        TableStatus::IndexesAdded(vec!["by-code".to_owned(), "code".to_owned()])
    );
}

/// Names storekit keeps for itself are refused, as are names that differ from an existing
/// table's only in case (one name on every backend, since SQLite cannot tell them apart).
async fn own_and_clashing_names_are_refused(store: &dyn TableStore) {
    // Core's schema builder refuses storekit's own names, before a store sees them.
    let refused = TableSchema::builder("Users", KeyDef::text("id")).build();
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "{refused:?}"
    );
    store.ensure_table(&things()).await.expect("ensure");
    let upper = TableSchema::builder("Things", KeyDef::int("id"))
        .build()
        .expect("valid");
    let second = store.ensure_table(&upper).await;
    assert!(
        matches!(
            second,
            Err(Error::InvalidInput {
                what: "table name",
                ..
            })
        ),
        "{second:?}"
    );
    assert!(!store.drop_table(&upper).await.expect("drops nothing"));
    assert_eq!(
        store.ensure_table(&things()).await.expect("still there"),
        TableStatus::Unchanged
    );
}

/// `xusers` in a store whose prefix is `app_` is the SQL table `app_xusers`: another store's,
/// of prefix `app_x`, holds its users there.
fn xusers() -> TableSchema {
    TableSchema::builder("xusers", KeyDef::text("id"))
        .build()
        .expect("valid schema")
}

/// A table that is not one of the tables store's, under the name a declared table would
/// take, is neither adopted nor dropped.
async fn another_stores_table_is_left_alone(store: &dyn TableStore) {
    let refused = store.ensure_table(&xusers()).await;
    let Err(Error::SchemaMismatch { differences, .. }) = &refused else {
        panic!("another store's table is not adopted: {refused:?}");
    };
    assert!(
        differences.iter().any(|d| d.contains("app_xusers")),
        "{differences:?}"
    );
    assert!(!store.drop_table(&xusers()).await.expect("drops nothing"));
    let insert = store.insert(&xusers(), doc(json!({"id": "u1"}))).await;
    assert!(insert.is_err(), "{insert:?}");
}

/// Records that fill every index of `things`, two of them sharing `name`.
async fn fill_things(store: &dyn TableStore) {
    for (id, name, a) in [
        ("t1", "lamp", "x"),
        ("t2", "lamp", "y"),
        ("t3", "desk", "z"),
    ] {
        store
            .insert(
                &things(),
                doc(json!({"id": id, "group": "g", "rank": 1, "name": name, "a": a, "b": 1.0})),
            )
            .await
            .expect("insert");
    }
}

/// After the SQL indexes `by-name` and `pair` were dropped by hand: `ensure_table` builds them
/// again and says so, and the unique one is enforced again.
async fn indexes_dropped_by_hand_are_built_again(store: &dyn TableStore) {
    assert_eq!(
        store.ensure_table(&things()).await.expect("ensure"),
        TableStatus::IndexesAdded(vec!["by-name".to_owned(), "pair".to_owned()])
    );
    assert_eq!(
        store.ensure_table(&things()).await.expect("again"),
        TableStatus::Unchanged
    );
    let taken = store
        .insert(&things(), doc(json!({"id": "t4", "a": "x", "b": 1.0})))
        .await;
    assert!(
        matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{taken:?}"
    );
    let page = store
        .query(
            &things(),
            &storekit_core::table::Query::index("by-name", "lamp"),
        )
        .await
        .expect("query");
    assert_eq!(page.items.len(), 2);
}

/// What `schema check` reports of the dropped indexes: each by name.
fn reports_dropped_indexes(differences: &[storekit_core::admin::SchemaDifference]) {
    let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
    for index in ["app_things:by-name", "app_things:pair"] {
        assert!(
            text.iter()
                .any(|d| d.contains(index) && d.contains("missing")),
            "{index}: {text:?}"
        );
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;

    use rusqlite::Connection;
    use storekit_sql::{SqliteConfig, SqliteStore};

    use super::*;

    /// A database file removed with its WAL when the test ends.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("storekit-tables-{name}-{}.db", std::process::id()));
            let db = Self(path);
            db.remove();
            db
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = self.0.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }

    async fn open(db: &TempDb) -> SqliteStore {
        let config = SqliteConfig::file(&db.0).table_prefix("app_");
        let store = SqliteStore::connect(&config).await.expect("open");
        store.migrate().await.expect("migrate");
        store
    }

    fn columns(conn: &Connection, table: &str) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT name, type FROM pragma_table_info('{table}')"
            ))
            .expect("prepare");
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("columns")
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_is_plain_sql_with_its_shape_in_the_catalog() {
        let db = TempDb::new("layout");
        let store = open(&db).await;
        store.ensure_table(&things()).await.expect("ensure");
        store
            .insert(
                &things(),
                doc(json!({"id": "t1", "group": "g", "rank": 7, "a": "x", "b": 0.5, "n": 1e20})),
            )
            .await
            .expect("insert");
        store
            .insert(&things(), doc(json!({"id": "t2", "name": "only"})))
            .await
            .expect("insert");

        let conn = Connection::open(&db.0).expect("open directly");
        assert_eq!(
            columns(&conn, "app_things"),
            owned(&[
                ("partition_key", "TEXT"),
                ("version", "INTEGER"),
                ("document", "TEXT"),
                ("by-group:partition", "TEXT"),
                ("by-group:sort", "INTEGER"),
                ("by-name:partition", "TEXT"),
                ("pair:1", "TEXT"),
                ("pair:2", "REAL"),
            ])
        );
        let mut stmt = conn
            .prepare(
                "SELECT partition_key, version, document, \"by-group:partition\", \
                 \"by-group:sort\", \"by-name:partition\", \"pair:1\", \"pair:2\" \
                 FROM app_things ORDER BY partition_key",
            )
            .expect("prepare");
        type Cells = (
            String,
            i64,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<f64>,
        );
        let rows: Vec<Cells> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let (id, version, document, group, rank, name, a, b) = &rows[0];
        assert_eq!((id.as_str(), *version), ("t1", 1));
        assert_eq!(
            serde_json::from_str::<Value>(document).expect("JSON"),
            json!({"id": "t1", "group": "g", "rank": 7, "a": "x", "b": 0.5, "n": 1e20})
        );
        assert_eq!(
            (group.as_deref(), *rank, name.as_deref()),
            (Some("g"), Some(7), None)
        );
        assert_eq!((a.as_deref(), *b), (Some("x"), Some(0.5)));
        let (_, _, _, group, rank, name, a, b) = &rows[1];
        assert_eq!(
            (group, rank, name.as_deref(), a, b),
            (&None, &None, Some("only"), &None, &None),
            "not in an index: NULL"
        );

        let indexes: Vec<(String, String)> = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'app_things' AND sql IS NOT NULL ORDER BY name",
            )
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("indexes");
        let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "app_things:by-group",
                "app_things:by-name",
                "app_things:pair"
            ]
        );
        assert!(
            indexes[0].1.contains(
                "(\"by-group:partition\", \"by-group:sort\", partition_key) \
                 WHERE \"by-group:partition\" IS NOT NULL"
            ),
            "{}",
            indexes[0].1
        );
        assert!(indexes[2].1.starts_with("CREATE UNIQUE INDEX"));

        let (name, shape): (String, String) = conn
            .query_row("SELECT name, shape FROM app_storekit_tables", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("one catalog row");
        assert_eq!(name, "things");
        assert_eq!(
            serde_json::from_str::<Value>(&shape).expect("JSON"),
            serde_json::to_value(things().shape()).expect("shape")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unique_index_that_cannot_be_built_changes_nothing() {
        let db = TempDb::new("backfill");
        let store = open(&db).await;
        a_duplicate_while_adding_a_unique_index_changes_nothing(&store).await;
        let conn = Connection::open(&db.0).expect("open directly");
        let names: Vec<String> = columns(&conn, "app_grown")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "partition_key",
                "version",
                "document",
                "by-code:partition",
                "code:1"
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_names_and_names_equal_but_for_case_are_refused() {
        let db = TempDb::new("names");
        let store = open(&db).await;
        own_and_clashing_names_are_refused(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_of_another_store_is_not_adopted_or_dropped() {
        let db = TempDb::new("adopt");
        let store = open(&db).await;
        let config = SqliteConfig::file(&db.0).table_prefix("app_x");
        let other = SqliteStore::connect(&config).await.expect("open");
        other.migrate().await.expect("migrate the other store");
        another_stores_table_is_left_alone(&store).await;
        let conn = Connection::open(&db.0).expect("open directly");
        assert_eq!(
            columns(&conn, "app_xusers")
                .first()
                .map(|(n, _)| n.as_str()),
            Some("id"),
            "the other store's users table is as it was"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_dropped_by_hand_is_reported_and_built_again() {
        let db = TempDb::new("dropped");
        let store = open(&db).await;
        store.ensure_table(&things()).await.expect("ensure");
        fill_things(&store).await;
        let conn = Connection::open(&db.0).expect("open directly");
        conn.execute_batch("DROP INDEX \"app_things:by-name\"; DROP INDEX \"app_things:pair\";")
            .expect("drop by hand");
        reports_dropped_indexes(&store.schema_differences().await.expect("check"));
        indexes_dropped_by_hand_are_built_again(&store).await;
        let left = store.schema_differences().await.expect("check");
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dump_and_drop_tables_cover_the_tables_store() {
        let db = TempDb::new("drop");
        let store = open(&db).await;
        store.ensure_table(&things()).await.expect("ensure");
        store
            .insert(&things(), doc(json!({"id": "t1", "note": "dumped"})))
            .await
            .expect("insert");
        let dump = store.dump().await.expect("dump");
        assert!(dump.contains("\"app_things\":"), "{dump}");
        assert!(dump.contains("\"note\":\"dumped\""), "{dump}");
        assert!(dump.contains("\"app_storekit_tables\": things"), "{dump}");
        store.drop_tables().await.expect("drop");
        let conn = Connection::open(&db.0).expect("open directly");
        let left: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'app%'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::Row as _;
    use storekit_sql::{PostgresConfig, PostgresStore};

    use super::*;

    /// A store in a schema of its own, or `None` without a server.
    async fn open(name: &str) -> Option<(PostgresStore, String)> {
        let url = common::postgres_url()?;
        let schema = format!("tables_{name}_{}", std::process::id());
        let config = PostgresConfig::from_url(&url)
            .expect("url")
            .schema(&schema)
            .table_prefix("app_")
            .max_connections(4);
        let store = PostgresStore::connect(&config).await.expect("connect");
        common::drop_schema(store.pool(), &schema).await.ok();
        store.migrate().await.expect("migrate");
        Some((store, schema))
    }

    /// Drops what the store made, then its schema, which must then be empty.
    async fn close(store: PostgresStore, schema: &str) {
        store.drop_tables().await.expect("drop tables");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" RESTRICT"
        )))
        .execute(store.pool())
        .await
        .expect("drop_tables left nothing behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_is_plain_sql_with_byte_ordered_text_and_its_shape_in_the_catalog() {
        let Some((store, schema)) = open("layout").await else {
            return;
        };
        store.ensure_table(&things()).await.expect("ensure");
        store
            .insert(&things(), doc(json!({"id": "t1", "group": "g", "rank": 7})))
            .await
            .expect("insert");
        let columns: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, collation_name::text \
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
             ORDER BY ordinal_position",
        )
        .bind(&schema)
        .bind("app_things")
        .fetch_all(store.pool())
        .await
        .expect("columns");
        let c = |name: &str, kind: &str, collation: Option<&str>| {
            (
                name.to_owned(),
                kind.to_owned(),
                collation.map(str::to_owned),
            )
        };
        assert_eq!(
            columns,
            [
                c("partition_key", "text", Some("C")),
                c("version", "bigint", None),
                c("document", "jsonb", None),
                c("by-group:partition", "text", Some("C")),
                c("by-group:sort", "bigint", None),
                c("by-name:partition", "text", Some("C")),
                c("pair:1", "text", Some("C")),
                c("pair:2", "double precision", None),
            ]
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT document->>'group', \"by-group:sort\", \"by-name:partition\" \
             FROM \"{schema}\".app_things"
        )))
        .fetch_one(store.pool())
        .await
        .expect("row");
        let (group, rank, name): (Option<String>, Option<i64>, Option<String>) = (
            row.try_get(0).expect("group"),
            row.try_get(1).expect("rank"),
            row.try_get(2).expect("name"),
        );
        assert_eq!((group.as_deref(), rank, name), (Some("g"), Some(7), None));
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = $1 \
             AND tablename = 'app_things' ORDER BY indexname",
        )
        .bind(&schema)
        .fetch_all(store.pool())
        .await
        .expect("indexes");
        let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "app_things:by-group",
                "app_things:by-name",
                "app_things:pair",
                "app_things:pk"
            ]
        );
        assert!(
            indexes[0]
                .1
                .contains("WHERE (\"by-group:partition\" IS NOT NULL)"),
            "{}",
            indexes[0].1
        );
        assert!(indexes[2].1.starts_with("CREATE UNIQUE INDEX"));
        let (name, shape): (String, Value) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT name, shape FROM \"{schema}\".app_storekit_tables"
        )))
        .fetch_one(store.pool())
        .await
        .expect("one catalog row");
        assert_eq!(name, "things");
        assert_eq!(
            shape,
            serde_json::to_value(things().shape()).expect("shape")
        );
        let dump = store.dump().await.expect("dump");
        assert!(dump.contains("app_things\": ("), "{dump}");
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unique_index_that_cannot_be_built_changes_nothing() {
        let Some((store, schema)) = open("backfill").await else {
            return;
        };
        a_duplicate_while_adding_a_unique_index_changes_nothing(&store).await;
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_names_and_names_too_long_for_postgres_are_refused() {
        let Some((store, schema)) = open("names").await else {
            return;
        };
        own_and_clashing_names_are_refused(&store).await;
        let url = common::postgres_url().expect("a server");
        let long_prefix = PostgresConfig::from_url(&url)
            .expect("url")
            .schema(&schema)
            .table_prefix("p".repeat(30));
        let cut = PostgresStore::connect(&long_prefix).await.expect("connect");
        let longest = TableSchema::builder("t".repeat(40), KeyDef::text("id"))
            .build()
            .expect("valid");
        let refused = cut.ensure_table(&longest).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput { .. })),
            "PostgreSQL would cut the name: {refused:?}"
        );
        store
            .ensure_table(&longest)
            .await
            .expect("fits in 63 bytes");
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_of_another_store_is_not_adopted_or_dropped() {
        let Some((store, schema)) = open("adopt").await else {
            return;
        };
        let url = common::postgres_url().expect("a server");
        let config = PostgresConfig::from_url(&url)
            .expect("url")
            .schema(&schema)
            .table_prefix("app_x")
            .max_connections(2);
        let other = PostgresStore::connect(&config).await.expect("connect");
        other.migrate().await.expect("migrate the other store");
        another_stores_table_is_left_alone(&store).await;
        let kept: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("\"{schema}\".\"app_xusers\""))
            .fetch_one(store.pool())
            .await
            .expect("look");
        assert!(kept, "the other store's users table is still there");
        other.drop_tables().await.expect("drop the other store");
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_dropped_by_hand_is_reported_and_built_again() {
        let Some((store, schema)) = open("dropped").await else {
            return;
        };
        store.ensure_table(&things()).await.expect("ensure");
        fill_things(&store).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP INDEX \"{schema}\".\"app_things:by-name\"; \
             DROP INDEX \"{schema}\".\"app_things:pair\""
        )))
        .execute(store.pool())
        .await
        .expect("drop by hand");
        reports_dropped_indexes(&store.schema_differences().await.expect("check"));
        indexes_dropped_by_hand_are_built_again(&store).await;
        let left = store.schema_differences().await.expect("check");
        assert!(left.is_empty(), "{left:?}");
        close(store, &schema).await;
    }
}
