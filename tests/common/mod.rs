//! What the copy tests share: a seeded store, a snapshot of everything a store holds, and the
//! servers this environment can reach.

#![allow(dead_code, clippy::print_stderr)] // Each test binary uses part of it; skips are loud.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use storekit::table::{KeyDef, Record, Scan, TableSchema};
use storekit::transfer::{KvPosition, UserBundle};
use storekit::{NewOAuthAccount, NewUser, PageRequest, Stores, UserPatch};

/// The seeded table: text ids, a query index on (category, price), a unique sku.
pub(crate) fn catalogue() -> TableSchema {
    TableSchema::builder("catalogue", KeyDef::text("id"))
        .index(
            "by-category",
            KeyDef::text("category"),
            Some(KeyDef::float("price")),
        )
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("a valid schema")
}

/// How much [`seed`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) users: usize,
    pub(crate) kv: usize,
    pub(crate) records: usize,
}

/// The sizes: 1,000 users, 10,000 kv items, 5,000 records.
pub(crate) const FULL: Sizes = Sizes {
    users: 1_000,
    kv: 10_000,
    records: 5_000,
};

/// Fills `stores` with users (each with OAuth accounts and tokens, some at a later version),
/// kv items in three namespaces (two with TTLs) and records (some at version 2).
pub(crate) async fn seed(stores: &Stores, sizes: Sizes) {
    let auth = stores.auth();
    for i in 0..sizes.users {
        let user = auth
            .create_user(
                NewUser::new(format!("user{i}@Example.com"), format!("$argon2id$hash{i}"))
                    .verified(i % 3 == 0)
                    .with_extra(&json!({"n": i, "name": format!("Zoë {i}"), "tags": ["a", "β"]}))
                    .expect("extra"),
            )
            .await
            .expect("create user");
        if i % 4 == 0 {
            auth.update_user(user.id, UserPatch::new().superuser(true))
                .await
                .expect("update user");
        }
        let mut github = NewOAuthAccount::new("github", format!("gh{i}"), "", "gho");
        github.refresh_token = Some(format!("ghr{i}"));
        github.expires_at = Some(storekit::now() + storekit::chrono::Duration::hours(2));
        auth.add_oauth_account(user.id, github)
            .await
            .expect("oauth");
        if i % 2 == 0 {
            auth.add_oauth_account(
                user.id,
                NewOAuthAccount::new(
                    "google",
                    format!("g{i}"),
                    format!("user{i}@gmail.com"),
                    "ya29",
                ),
            )
            .await
            .expect("oauth");
        }
        for _ in 0..=(i % 2) {
            let _issued = auth.create_access_token(user.id).await.expect("token");
        }
    }

    let kv = stores.kv();
    let keys: Vec<(String, String, Vec<u8>, Option<Duration>)> = (0..sizes.kv)
        .map(|i| {
            let (namespace, ttl) = match i % 3 {
                0 => ("sessions", Some(Duration::from_secs(3_600))),
                1 => ("cache", Some(Duration::from_secs(600 + i as u64))),
                _ => ("flags", None),
            };
            let value = format!("value {i} ✓").into_bytes();
            (namespace.to_owned(), format!("key/{i:05}"), value, ttl)
        })
        .collect();
    for (namespace, key, value, ttl) in &keys {
        kv.set(namespace, key, value, *ttl).await.expect("kv set");
    }

    let tables = stores.tables();
    let schema = catalogue();
    tables.ensure_table(&schema).await.expect("ensure table");
    for i in 0..sizes.records {
        let category = ["tools", "books", "games"][i % 3];
        let document = json!({
            "id": format!("p{i:05}"),
            "category": category,
            "price": 0.25 + i as f64,
            "sku": format!("SKU-{i}"),
            "details": {"weight": i % 17, "note": "ünïcode"},
        });
        let record = tables
            .put(&schema, document.as_object().cloned().expect("object"))
            .await
            .expect("put record");
        if i % 5 == 0 {
            tables
                .put(&schema, record.document)
                .await
                .expect("put again");
        }
    }
}

/// Everything a store holds, as the transfer API reads it.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    /// (namespace, key) → (value, deadline in Unix ms).
    pub(crate) kv: BTreeMap<(String, String), (Vec<u8>, Option<i64>)>,
    /// By id, as text.
    pub(crate) users: BTreeMap<String, UserBundle>,
    /// Per table, by key.
    pub(crate) records: BTreeMap<String, Vec<Record>>,
}

pub(crate) async fn snapshot(stores: &Stores) -> Snapshot {
    let transfer = stores.transfer();
    let mut kv = BTreeMap::new();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = transfer
            .export_kv(None, after.as_ref(), 1_000)
            .await
            .expect("export kv");
        for entry in &page {
            kv.insert(
                (entry.namespace.clone(), entry.key.clone()),
                (entry.value.clone(), entry.expires_at),
            );
        }
        match page.last() {
            Some(last) if page.len() == 1_000 => after = Some(last.position()),
            _ => break,
        }
    }

    let auth = stores.auth();
    let mut users = BTreeMap::new();
    let mut request = PageRequest::first(1_000);
    loop {
        let page = auth.list_users(request.clone()).await.expect("list users");
        for user in &page.items {
            let bundle = transfer
                .export_user(user.id)
                .await
                .expect("export user")
                .expect("listed user");
            users.insert(user.id.to_string(), bundle);
        }
        match page.next {
            Some(next) => request = PageRequest::after(1_000, next),
            None => break,
        }
    }

    let tables = stores.tables();
    let mut records = BTreeMap::new();
    for schema in transfer.tables().await.expect("tables") {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut scan = Scan::new().limit(1_000);
            if let Some(cursor) = cursor.take() {
                scan = scan.after(cursor);
            }
            let page = tables.scan(&schema, &scan).await.expect("scan");
            all.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        records.insert(schema.name().to_owned(), all);
    }
    Snapshot { kv, users, records }
}

/// Asserts two snapshots hold the same things, deadlines within a second.
pub(crate) fn assert_same(left: &Snapshot, right: &Snapshot, what: &str) {
    assert_eq!(left.kv.len(), right.kv.len(), "{what}: kv items");
    for (key, (value, deadline)) in &left.kv {
        let (other_value, other_deadline) = right
            .kv
            .get(key)
            .unwrap_or_else(|| panic!("{what}: kv {key:?} missing"));
        assert_eq!(value, other_value, "{what}: kv {key:?} value");
        match (deadline, other_deadline) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1_000, "{what}: kv {key:?} ttl"),
            _ => panic!("{what}: kv {key:?} deadline {deadline:?} vs {other_deadline:?}"),
        }
    }
    assert_eq!(left.users.len(), right.users.len(), "{what}: users");
    for (id, bundle) in &left.users {
        assert_eq!(Some(bundle), right.users.get(id), "{what}: user {id}");
    }
    assert_eq!(left.records, right.records, "{what}: records");
}

/// A server URL from the environment; a loud skip without it, a failure when `CI` is set.
pub(crate) fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set and CI is: run `eval \"$(scripts/services.sh up)\"` first")
        }
        _ => {
            eprintln!("SKIPPED: {var} is not set");
            None
        }
    }
}

/// A fresh SQLite database file's URL.
pub(crate) fn sqlite_url(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("storekit-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

/// A PostgreSQL URL with a fresh prefix, if a server is configured.
pub(crate) fn postgres_url(prefix: &str) -> Option<String> {
    let server = server("STOREKIT_POSTGRES_URL")?;
    let separator = if server.contains('?') { '&' } else { '?' };
    Some(format!(
        "{server}{separator}prefix={prefix}_{:x}_",
        std::process::id()
    ))
}

/// A DynamoDB Local URL with a fresh prefix, if an endpoint is configured.
pub(crate) fn dynamodb_url(prefix: &str) -> Option<String> {
    let endpoint = server("STOREKIT_DYNAMODB_ENDPOINT")?;
    Some(format!(
        "dynamodb://?endpoint={endpoint}&region=us-east-1&prefix={prefix}_{:x}_",
        std::process::id()
    ))
}

/// Connects and migrates.
pub(crate) async fn open(url: &str) -> Stores {
    let stores = storekit::connect(url).await.expect("connect");
    stores.migrate().await.expect("migrate");
    stores
}
