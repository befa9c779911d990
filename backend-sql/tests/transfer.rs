//! `storekit copy` on SQLite and PostgreSQL: kv pages in byte order with their deadlines,
//! imports that replace, users copied out and back with their ids, versions, accounts and
//! token hashes, integer ids never handed out twice, and records at their versions, with
//! nothing half-written when a batch fails. The conformance suite's transfer group holds the
//! exhaustive cases; these prove each SQL backend.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use storekit_core::table::{Document, KeyDef, Record, TableSchema, TableStore};
use storekit_core::transfer::{Imported, KvEntry, KvPosition, TransferStore, UserBundle};
use storekit_core::{
    AccessTokenStore, Error, KvStore, NewOAuthAccount, NewUser, OAuthAccountStore, UserId,
    UserStore, now,
};

/// Every store trait of one backend, as the cases use them.
trait Store:
    TransferStore + KvStore + UserStore + OAuthAccountStore + AccessTokenStore + TableStore
{
}

impl<S> Store for S where
    S: TransferStore + KvStore + UserStore + OAuthAccountStore + AccessTokenStore + TableStore
{
}

fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Every page of live items, in order, checking each page is full but the last.
async fn export_all(
    store: &dyn TransferStore,
    namespace: Option<&str>,
    limit: usize,
) -> Vec<KvEntry> {
    let mut all: Vec<KvEntry> = Vec::new();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = store
            .export_kv(namespace, after.as_ref(), limit)
            .await
            .expect("export_kv");
        all.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == limit => after = Some(last.position()),
            _ => return all,
        }
    }
}

fn millis_in(ttl: Duration) -> i64 {
    now().timestamp_millis() + i64::try_from(ttl.as_millis()).expect("fits")
}

async fn kv_pages_are_in_byte_order_with_deadlines(store: &dyn Store) {
    let ttl = Duration::from_secs(600);
    let (before, kv) = (millis_in(ttl), store as &dyn KvStore);
    for key in ["a", "B", "é", "z", "a b"] {
        kv.set("alpha", key, key.as_bytes(), None)
            .await
            .expect("set");
        kv.set("beta", key, b"b", Some(ttl)).await.expect("set");
    }
    kv.set("alpha", "gone", b"x", Some(Duration::from_millis(1)))
        .await
        .expect("set");
    let after = millis_in(ttl);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let transfer = store as &dyn TransferStore;
    for limit in [1, 3, 1000] {
        let all = export_all(transfer, None, limit).await;
        let keys: Vec<(&str, &str)> = all
            .iter()
            .map(|e| (e.namespace.as_str(), e.key.as_str()))
            .collect();
        // Byte order: upper case before lower, a space before letters, UTF-8 last.
        let order = ["B", "a", "a b", "z", "é"];
        let expected: Vec<(&str, &str)> = ["alpha", "beta"]
            .iter()
            .flat_map(|ns| order.iter().map(move |key| (*ns, *key)))
            .collect();
        assert_eq!(keys, expected, "limit {limit}");
        for entry in &all {
            match entry.namespace.as_str() {
                "alpha" => {
                    assert_eq!(entry.expires_at, None);
                    assert_eq!(entry.value, entry.key.as_bytes());
                }
                _ => {
                    let at = entry.expires_at.expect("a deadline");
                    assert!(
                        (before..=after).contains(&at),
                        "{at} in [{before}, {after}]"
                    );
                }
            }
        }
    }
    let beta = export_all(transfer, Some("beta"), 2).await;
    assert_eq!(beta.len(), 5);
    assert!(beta.iter().all(|e| e.namespace == "beta"));
}

async fn kv_import_replaces_and_keeps_deadlines(store: &dyn Store) {
    let kv = store as &dyn KvStore;
    kv.set("n", "k", b"old", None).await.expect("set");
    let deadline = millis_in(Duration::from_secs(900));
    let entry = |key: &str, value: &[u8], expires_at| KvEntry {
        namespace: "n".into(),
        key: key.into(),
        value: value.to_vec(),
        expires_at,
    };
    let items = vec![
        entry("k", b"new", Some(deadline)),
        entry("fresh", b"v", None),
    ];
    let transfer = store as &dyn TransferStore;
    assert_eq!(transfer.import_kv(&items).await.expect("import"), 2);
    let mut sorted = items.clone();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(export_all(transfer, Some("n"), 10).await, sorted);
    assert_eq!(kv.get("n", "k").await.expect("get"), Some(b"new".to_vec()));
    // A thousand items, one batch, each read back.
    let many: Vec<KvEntry> = (0..1000)
        .map(|i| entry(&format!("m{i:04}"), format!("{i}").as_bytes(), None))
        .collect();
    assert_eq!(transfer.import_kv(&many).await.expect("import"), 1000);
    assert_eq!(export_all(transfer, Some("n"), 1000).await.len(), 1002);
}

/// A user with two OAuth accounts and two tokens, as the store holds it.
async fn bundled_user(store: &dyn Store, email: &str, account: &str) -> UserBundle {
    let user = store
        .create_user(
            NewUser::new(email, "$argon2id$hash")
                .verified(true)
                .with_extra(&json!({"plan": "pro"}))
                .expect("extra"),
        )
        .await
        .expect("create");
    let mut github = NewOAuthAccount::new("github", account, email, "gho");
    github.expires_at = Some(now() + storekit_core::chrono::Duration::hours(1));
    github.refresh_token = Some("ghr".into());
    store
        .add_oauth_account(user.id, github)
        .await
        .expect("oauth");
    store
        .add_oauth_account(
            user.id,
            NewOAuthAccount::new("google", account, email, "ya29"),
        )
        .await
        .expect("oauth");
    for _ in 0..2 {
        let _token = store.create_access_token(user.id).await.expect("token");
    }
    let transfer = store as &dyn TransferStore;
    transfer
        .export_user(user.id)
        .await
        .expect("export")
        .expect("there")
}

async fn users_copy_out_and_back_exactly(store: &dyn Store) {
    let transfer = store as &dyn TransferStore;
    let bundle = bundled_user(store, "ada@example.com", "ada").await;
    assert_eq!(bundle.oauth_accounts.len(), 2);
    assert_eq!(bundle.access_tokens.len(), 2);
    store.delete_user(bundle.user.id).await.expect("delete");
    assert_eq!(
        transfer.import_user(&bundle).await.expect("import"),
        Imported::Created
    );
    let back = transfer.export_user(bundle.user.id).await.expect("export");
    assert_eq!(back.as_ref(), Some(&bundle));
    assert_eq!(
        transfer.import_user(&bundle).await.expect("again"),
        Imported::Unchanged
    );
    // Another version of it, with one account fewer, replaces it whole.
    let mut changed = bundle.clone();
    changed.user.email = "ada@lovelace.example".into();
    changed.user.version = 9;
    changed.user.updated_at = storekit_core::truncate(now());
    changed.oauth_accounts.pop();
    assert_eq!(
        transfer.import_user(&changed).await.expect("update"),
        Imported::Updated
    );
    let back = transfer.export_user(bundle.user.id).await.expect("export");
    assert_eq!(back, Some(changed.clone().sorted()));
    let by_email = store
        .get_user_by_email("ADA@lovelace.example")
        .await
        .expect("get");
    assert_eq!(by_email.map(|u| u.version), Some(9));
}

/// A bundle for a new user of this store's id kind that takes `email` and the OAuth account
/// `account` of github.
fn stranger(of: &UserBundle, id: UserId, email: &str) -> UserBundle {
    let mut bundle = of.clone();
    bundle.user.id = id;
    bundle.user.email = email.into();
    for account in &mut bundle.oauth_accounts {
        account.user_id = id;
    }
    bundle.access_tokens.clear();
    bundle
}

async fn taken_emails_and_accounts_write_nothing(store: &dyn Store, free_id: UserId) {
    let transfer = store as &dyn TransferStore;
    let held = bundled_user(store, "held@example.com", "held").await;
    let mut email_taken = stranger(&held, free_id, "HELD@example.com");
    email_taken.oauth_accounts.clear();
    let refused = transfer.import_user(&email_taken).await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { what: "email" })),
        "{refused:?}"
    );
    let account_taken = stranger(&held, free_id, "other@example.com");
    let refused = transfer.import_user(&account_taken).await;
    assert!(
        matches!(
            refused,
            Err(Error::AlreadyExists {
                what: "oauth account"
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.get_user(free_id).await.expect("get"),
        None,
        "nothing half-written"
    );
    let still = transfer.export_user(held.user.id).await.expect("export");
    assert_eq!(still, Some(held));
}

async fn imported_int_ids_are_never_handed_out_again(store: &dyn Store) {
    let transfer = store as &dyn TransferStore;
    let template = bundled_user(store, "first@example.com", "first").await;
    let bundle = stranger(&template, UserId::Int(500), "five@example.com");
    let bundle = UserBundle {
        oauth_accounts: Vec::new(),
        ..bundle
    };
    assert_eq!(
        transfer.import_user(&bundle).await.expect("import"),
        Imported::Created
    );
    let next = store
        .create_user(NewUser::new("next@example.com", "h"))
        .await
        .expect("create");
    assert!(
        matches!(next.id, UserId::Int(id) if id > 500),
        "{:?} after importing 500",
        next.id
    );
}

fn catalogue() -> TableSchema {
    TableSchema::builder("copied", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

fn record(schema: &TableSchema, value: Value, version: u64) -> Record {
    let document = doc(value);
    Record {
        key: schema.key_of(&document).expect("key"),
        version,
        document,
    }
}

async fn records_keep_their_versions_and_unique_values(store: &dyn Store) {
    let schema = catalogue();
    let tables = store as &dyn TableStore;
    let transfer = store as &dyn TransferStore;
    tables.ensure_table(&schema).await.expect("ensure");
    let listed = transfer.tables().await.expect("tables");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].shape(), schema.shape());
    let first = record(
        &schema,
        json!({"id": "a", "group": "g", "rank": 1, "sku": "s1"}),
        7,
    );
    transfer
        .import_records(&schema, std::slice::from_ref(&first))
        .await
        .expect("import");
    let got = tables.get(&schema, &first.key).await.expect("get");
    assert_eq!(got.map(|r| r.version), Some(7));
    // Written again at a lower version: the copy is what the source holds.
    let again = record(
        &schema,
        json!({"id": "a", "group": "h", "rank": 2, "sku": "s1"}),
        3,
    );
    transfer
        .import_records(&schema, std::slice::from_ref(&again))
        .await
        .expect("import");
    assert_eq!(
        tables.get(&schema, &first.key).await.expect("get"),
        Some(again)
    );
    let page = tables
        .query(
            &schema,
            &storekit_core::table::Query::index("by-group", "h"),
        )
        .await
        .expect("query");
    assert_eq!(page.items.len(), 1, "the index columns were rewritten");
    // The second record takes a sku the first holds: the whole batch is refused.
    let fine = record(&schema, json!({"id": "b", "sku": "s2"}), 2);
    let clash = record(&schema, json!({"id": "c", "sku": "s1"}), 5);
    let refused = transfer
        .import_records(&schema, &[fine.clone(), clash])
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{refused:?}"
    );
    assert_eq!(tables.get(&schema, &fine.key).await.expect("get"), None);
    assert_eq!(tables.count(&schema).await.expect("count"), 1);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use storekit_core::IdKind;
    use storekit_sql::{SqliteConfig, SqliteStore};

    use super::*;

    async fn open(kind: IdKind) -> SqliteStore {
        let config = SqliteConfig::memory().table_prefix("app_").id_kind(kind);
        let store = SqliteStore::connect(&config).await.expect("open");
        store.migrate().await.expect("migrate");
        store
    }

    #[tokio::test]
    async fn kv_pages_are_in_byte_order_with_deadlines() {
        super::kv_pages_are_in_byte_order_with_deadlines(&open(IdKind::Uuid).await).await;
    }

    #[tokio::test]
    async fn kv_import_replaces_and_keeps_deadlines() {
        super::kv_import_replaces_and_keeps_deadlines(&open(IdKind::Uuid).await).await;
    }

    #[tokio::test]
    async fn users_copy_out_and_back_exactly() {
        super::users_copy_out_and_back_exactly(&open(IdKind::Uuid).await).await;
        super::users_copy_out_and_back_exactly(&open(IdKind::Int).await).await;
    }

    #[tokio::test]
    async fn taken_emails_and_accounts_write_nothing() {
        let free = UserId::Uuid(uuid::Uuid::now_v7());
        super::taken_emails_and_accounts_write_nothing(&open(IdKind::Uuid).await, free).await;
    }

    #[tokio::test]
    async fn imported_int_ids_are_never_handed_out_again() {
        super::imported_int_ids_are_never_handed_out_again(&open(IdKind::Int).await).await;
    }

    #[tokio::test]
    async fn records_keep_their_versions_and_unique_values() {
        super::records_keep_their_versions_and_unique_values(&open(IdKind::Uuid).await).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use storekit_core::IdKind;
    use storekit_sql::{PostgresConfig, PostgresStore};

    use super::*;

    /// A store in a schema of its own, or `None` without a server (a failure with `CI` set).
    async fn open(name: &str, kind: IdKind) -> Option<(PostgresStore, String)> {
        let url = common::postgres_url()?;
        let schema = format!("transfer_{name}_{}", std::process::id());
        let config = PostgresConfig::from_url(&url)
            .expect("url")
            .schema(&schema)
            .table_prefix("app_")
            .id_kind(kind)
            .max_connections(4);
        let store = PostgresStore::connect(&config).await.expect("connect");
        common::drop_schema(store.pool(), &schema).await.ok();
        store.migrate().await.expect("migrate");
        Some((store, schema))
    }

    async fn close(store: PostgresStore, schema: &str) {
        common::drop_schema(store.pool(), schema)
            .await
            .expect("drop schema");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kv_pages_are_in_byte_order_with_deadlines() {
        let Some((store, schema)) = open("kv_pages", IdKind::Uuid).await else {
            return;
        };
        super::kv_pages_are_in_byte_order_with_deadlines(&store).await;
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kv_import_replaces_and_keeps_deadlines() {
        let Some((store, schema)) = open("kv_import", IdKind::Uuid).await else {
            return;
        };
        super::kv_import_replaces_and_keeps_deadlines(&store).await;
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_copy_out_and_back_exactly() {
        for kind in [IdKind::Uuid, IdKind::Int] {
            let name = format!("users_{}", kind.as_str());
            let Some((store, schema)) = open(&name, kind).await else {
                return;
            };
            super::users_copy_out_and_back_exactly(&store).await;
            close(store, &schema).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn taken_emails_and_accounts_write_nothing() {
        let Some((store, schema)) = open("taken", IdKind::Int).await else {
            return;
        };
        super::taken_emails_and_accounts_write_nothing(&store, UserId::Int(9_000)).await;
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn imported_int_ids_are_never_handed_out_again() {
        let Some((store, schema)) = open("int_ids", IdKind::Int).await else {
            return;
        };
        super::imported_int_ids_are_never_handed_out_again(&store).await;
        close(store, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_keep_their_versions_and_unique_values() {
        let Some((store, schema)) = open("records", IdKind::Uuid).await else {
            return;
        };
        super::records_keep_their_versions_and_unique_values(&store).await;
        close(store, &schema).await;
    }
}

/// 100,000 kv items copied SQLite → PostgreSQL a thousand at a time, beside the same rows
/// bulk-inserted straight into PostgreSQL; prints both rates. Run by hand:
/// `cargo test -p storekit-sql --all-features --release --test transfer -- --ignored --nocapture`.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
#[expect(
    clippy::print_stdout,
    reason = "the measurement is for whoever runs it"
)]
async fn copy_rate_beside_a_raw_bulk_insert() {
    use std::time::Instant;

    use storekit_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};

    let Some(url) = common::postgres_url() else {
        return;
    };
    const ITEMS: usize = 100_000;
    let source = SqliteStore::connect(&SqliteConfig::memory())
        .await
        .expect("open");
    source.migrate().await.expect("migrate");
    let items: Vec<KvEntry> = (0..ITEMS)
        .map(|i| KvEntry {
            namespace: "bench".into(),
            key: format!("key:{i:08}"),
            value: vec![b'v'; 100],
            expires_at: None,
        })
        .collect();
    for batch in items.chunks(1000) {
        TransferStore::import_kv(&source, batch)
            .await
            .expect("fill");
    }
    let schema = format!("transfer_rate_{}", std::process::id());
    let config = PostgresConfig::from_url(&url).expect("url").schema(&schema);
    let target = PostgresStore::connect(&config).await.expect("connect");
    common::drop_schema(target.pool(), &schema).await.ok();
    target.migrate().await.expect("migrate");

    let started = Instant::now();
    let mut after: Option<KvPosition> = None;
    let (mut reading, mut writing) = (Duration::ZERO, Duration::ZERO);
    loop {
        let read = Instant::now();
        let page = TransferStore::export_kv(&source, None, after.as_ref(), 1000)
            .await
            .expect("export");
        let write = Instant::now();
        reading += write - read;
        TransferStore::import_kv(&target, &page)
            .await
            .expect("import");
        writing += write.elapsed();
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.position()),
            _ => break,
        }
    }
    let copy = started.elapsed();

    let raw = format!("\"{schema}\".raw_kv");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {raw} (namespace text COLLATE \"C\", key text COLLATE \"C\", \
         value bytea, expires_at bigint, PRIMARY KEY (namespace, key))"
    )))
    .execute(target.pool())
    .await
    .expect("raw table");
    let insert = format!(
        "INSERT INTO {raw} SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bigint[])"
    );
    let started = Instant::now();
    for batch in items.chunks(1000) {
        let namespaces: Vec<&str> = batch.iter().map(|e| e.namespace.as_str()).collect();
        let keys: Vec<&str> = batch.iter().map(|e| e.key.as_str()).collect();
        let values: Vec<&[u8]> = batch.iter().map(|e| e.value.as_slice()).collect();
        let deadlines: Vec<Option<i64>> = batch.iter().map(|e| e.expires_at).collect();
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(&namespaces)
            .bind(&keys)
            .bind(&values)
            .bind(&deadlines)
            .execute(target.pool())
            .await
            .expect("raw insert");
    }
    let bulk = started.elapsed();
    let rate = |took: Duration| ITEMS as f64 / took.as_secs_f64();
    println!("reading {reading:?}, writing {writing:?}");
    println!(
        "copy {:.0} items/s, raw bulk insert {:.0} items/s: {:.2}x",
        rate(copy),
        rate(bulk),
        rate(copy) / rate(bulk)
    );
    common::drop_schema(target.pool(), &schema)
        .await
        .expect("drop");
}
