//! Copying a store out and in (`storekit copy`): every live kv item with its deadline, every
//! user with its id, version, OAuth accounts and token hashes, every table record with its
//! version. The backend is copied to and from a [`MemoryStore`], the reference, so each case
//! checks both directions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storekit_core::table::{KeyDef, Record, TableSchema, TableStore};
use storekit_core::transfer::{Imported, KvEntry, KvPosition, TransferStore, UserBundle};
use storekit_core::{
    Error, IdKind, MemoryStore, NewOAuthAccount, NewUser, UserId, UserPatch, chrono, now,
};

use crate::Fixture;

/// Every live item of the store, page after page of `limit`, checking each page is full
/// unless it is the last and no item comes twice.
async fn export_all(
    store: &dyn TransferStore,
    namespace: Option<&str>,
    limit: usize,
) -> BTreeMap<(String, String), KvEntry> {
    let mut all = BTreeMap::new();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = store
            .export_kv(namespace, after.as_ref(), limit)
            .await
            .expect("export_kv");
        assert!(
            page.len() <= limit,
            "a page of {} at limit {limit}",
            page.len()
        );
        for entry in &page {
            let key = (entry.namespace.clone(), entry.key.clone());
            assert!(
                all.insert(key, entry.clone()).is_none(),
                "{entry:?} came twice"
            );
        }
        match page.last() {
            Some(last) if page.len() == limit => after = Some(last.position()),
            _ => return all,
        }
    }
}

fn millis_in(ttl: Duration) -> i64 {
    now().timestamp_millis() + i64::try_from(ttl.as_millis()).expect("ttl fits")
}

/// Export pages hold every live item once, in full pages, with its deadline; expired items
/// and other namespaces stay out.
pub async fn kv_export_pages_every_live_item_once_with_its_deadline(f: &Fixture) {
    let store = f.transfer().as_ref();
    let kv = &f.kv;
    let ttl = Duration::from_secs(600);
    let before = millis_in(ttl);
    for i in 0..23 {
        let value = format!("v{i}");
        kv.set("alpha", &format!("k{i:02}"), value.as_bytes(), None)
            .await
            .expect("set");
        kv.set("beta", &format!("é{i}"), value.as_bytes(), Some(ttl))
            .await
            .expect("set");
    }
    kv.set("gamma", "gone", b"x", Some(Duration::from_millis(1)))
        .await
        .expect("set");
    let after = millis_in(ttl);
    tokio::time::sleep(Duration::from_millis(20)).await;

    for limit in [1, 7, 1000] {
        let all = export_all(store, None, limit).await;
        assert_eq!(all.len(), 46, "every live item once at limit {limit}");
        assert!(
            !all.keys().any(|(ns, _)| ns == "gamma"),
            "expired items stay"
        );
        for ((ns, key), entry) in &all {
            let i: usize = key
                .trim_start_matches(['k', 'é'])
                .parse()
                .expect("numbered key");
            assert_eq!(entry.value, format!("v{i}").into_bytes());
            match ns.as_str() {
                "alpha" => assert_eq!(entry.expires_at, None),
                _ => {
                    let at = entry.expires_at.expect("a deadline");
                    assert!(
                        (before..=after).contains(&at),
                        "deadline {at} outside [{before}, {after}]"
                    );
                }
            }
        }
    }
    let beta = export_all(store, Some("beta"), 5).await;
    assert_eq!(beta.len(), 23);
    assert!(beta.keys().all(|(ns, _)| ns == "beta"));
    assert!(export_all(store, Some("nothing"), 5).await.is_empty());
    assert_matches!(
        store.export_kv(None, None, 0).await,
        Err(Error::InvalidInput { .. })
    );
}

/// Imported items read back with their values and deadlines to the millisecond, replace
/// what was there, and bad batches write nothing.
pub async fn kv_import_keeps_values_and_deadlines_and_replaces(f: &Fixture) {
    let store = f.transfer().as_ref();
    let deadline = millis_in(Duration::from_secs(900));
    let entry = |ns: &str, key: &str, value: &[u8], expires_at| KvEntry {
        namespace: ns.into(),
        key: key.into(),
        value: value.to_vec(),
        expires_at,
    };
    let items = vec![
        entry("sessions", "a", b"one", Some(deadline)),
        entry("sessions", "b", &[0, 255, 7], None),
        entry(
            "cache",
            "expired",
            b"old",
            Some(now().timestamp_millis() - 1_000),
        ),
        entry("cache", "ü/ключ", b"", Some(deadline + 1)),
    ];
    assert_eq!(store.import_kv(&items).await.expect("import"), 3);
    assert_eq!(
        f.kv.get("sessions", "a").await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(f.kv.get("cache", "expired").await.expect("get"), None);
    let all = export_all(store, None, 100).await;
    assert_eq!(all.len(), 3);
    let live: Vec<_> = items
        .iter()
        .filter(|e| e.key != "expired")
        .cloned()
        .collect();
    for want in &live {
        let got = &all[&(want.namespace.clone(), want.key.clone())];
        assert_eq!(got, want, "value and deadline to the millisecond");
    }

    // Importing again replaces: a new value, a deadline removed, one added.
    let again = vec![
        entry("sessions", "a", b"two", None),
        entry("sessions", "b", b"three", Some(deadline)),
    ];
    assert_eq!(store.import_kv(&again).await.expect("import"), 2);
    let all = export_all(store, Some("sessions"), 100).await;
    assert_eq!(all.values().cloned().collect::<Vec<_>>(), again);

    // Bad input is refused before anything is written.
    let twice = vec![entry("x", "k", b"1", None), entry("x", "k", b"2", None)];
    assert_matches!(
        store.import_kv(&twice).await,
        Err(Error::InvalidInput { .. })
    );
    let nul = vec![entry("x", "ok", b"1", None), entry("x", "a\0b", b"1", None)];
    assert_matches!(store.import_kv(&nul).await, Err(Error::InvalidInput { .. }));
    assert!(export_all(store, Some("x"), 10).await.is_empty());
}

/// A value written with `set_json` exports as its JSON with its deadline (on DynamoDB, where
/// it is a native document, as compact JSON with sorted keys) and copies into the reference
/// store and back reading equal through `get_json`.
pub async fn kv_json_items_export_and_copy_as_their_json(f: &Fixture) {
    use storekit_core::KvStoreExt as _;
    let store = f.transfer().as_ref();
    let doc = json!({"user": "ada", "roles": ["admin"], "n": 7, "f": 0.25, "none": null});
    let hour = Duration::from_secs(3600);
    f.kv.set_json("docs", "d", &doc, Some(hour))
        .await
        .expect("set_json");
    f.kv.set_json("docs", "s", &"text", None)
        .await
        .expect("set_json");
    let all = export_all(store, Some("docs"), 10).await;
    assert_eq!(all.len(), 2);
    let d = &all[&("docs".to_owned(), "d".to_owned())];
    assert_eq!(d.value, serde_json::to_vec(&doc).expect("to_vec"));
    assert!(d.expires_at.is_some(), "{d:?}");
    let s = &all[&("docs".to_owned(), "s".to_owned())];
    assert_eq!(s.value, b"\"text\"");

    let reference = MemoryStore::new();
    let entries: Vec<KvEntry> = all.values().cloned().collect();
    assert_eq!(reference.import_kv(&entries).await.expect("import"), 2);
    let copied: Option<serde_json::Value> =
        reference.get_json("docs", "d").await.expect("get_json");
    assert_eq!(copied, Some(doc.clone()));
    f.kv.clear("docs").await.expect("clear");
    let back = export_all(&reference, Some("docs"), 10).await;
    let back: Vec<KvEntry> = back.into_values().collect();
    assert_eq!(store.import_kv(&back).await.expect("import back"), 2);
    let read: Option<serde_json::Value> = f.kv.get_json("docs", "d").await.expect("get_json");
    assert_eq!(read, Some(doc));
    assert_eq!(
        f.kv.get_json::<String>("docs", "s")
            .await
            .expect("get_json"),
        Some("text".to_owned())
    );
}

/// A user with two OAuth accounts, two tokens and a second version, made through the stores.
async fn rich_user(f: &Fixture, email: &str) -> (UserId, Vec<String>) {
    let auth = &f.auth;
    let user = auth
        .create_user(
            NewUser::new(email, "$argon2id$v=19$hash")
                .verified(true)
                .with_extra(&json!({"plan": "pro", "n": 3}))
                .expect("extra"),
        )
        .await
        .expect("create");
    auth.update_user(user.id, UserPatch::new().superuser(true))
        .await
        .expect("update");
    let mut github = NewOAuthAccount::new("github", "gh-1", email, "gho_token");
    github.expires_at = Some(now() + chrono::Duration::hours(1));
    github.refresh_token = Some("ghr_refresh".into());
    auth.add_oauth_account(user.id, github)
        .await
        .expect("oauth");
    auth.add_oauth_account(
        user.id,
        NewOAuthAccount::new("google", email, email, "ya29"),
    )
    .await
    .expect("oauth");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        tokens.push(
            auth.create_access_token(user.id)
                .await
                .expect("token")
                .token,
        );
    }
    (user.id, tokens)
}

/// A user copied out and back is unchanged; a changed bundle makes the stored user equal it
/// (email freed, account dropped), and its tokens keep working.
pub async fn users_copy_out_and_back_unchanged(f: &Fixture) {
    let store = f.transfer().as_ref();
    let kind = store.id_kind();
    let (id, tokens) = rich_user(f, "Zoë.Copy@Example.com").await;
    let bundle = store.export_user(id).await.expect("export").expect("found");
    assert_eq!(bundle.user.version, 2);
    assert_eq!(bundle.oauth_accounts.len(), 2);
    assert_eq!(bundle.access_tokens.len(), 2);
    assert_eq!(
        store.export_user(another_id(kind)).await.expect("export"),
        None
    );

    // Out to the reference and back: the same bundle, and re-importing changes nothing.
    let reference = MemoryStore::with_id_kind(kind);
    assert_eq!(
        reference.import_user(&bundle).await.expect("import"),
        Imported::Created
    );
    let copied = reference
        .export_user(id)
        .await
        .expect("export")
        .expect("found");
    assert_eq!(copied, bundle);
    assert_eq!(
        store.import_user(&copied).await.expect("import"),
        Imported::Unchanged
    );

    // A changed bundle makes the stored user equal it: fields, version, accounts, tokens.
    let mut changed = copied.clone();
    changed.user.extra = json!({"plan": "free"})
        .as_object()
        .cloned()
        .expect("object");
    changed.user.version = 5;
    changed.user.email = "moved@example.com".into();
    changed.oauth_accounts.retain(|a| a.provider == "google");
    assert_eq!(
        store.import_user(&changed).await.expect("import"),
        Imported::Updated
    );
    let stored = store.export_user(id).await.expect("export").expect("found");
    assert_eq!(stored, changed);
    let auth = &f.auth;
    assert!(
        auth.get_user_by_email("zoë.copy@example.com")
            .await
            .expect("by email")
            .is_none(),
        "the old email is free"
    );
    assert_eq!(
        auth.get_user_by_email("MOVED@example.com")
            .await
            .expect("by email")
            .map(|u| u.id),
        Some(id)
    );
    assert!(
        auth.get_user_by_oauth_account("github", "gh-1")
            .await
            .expect("by oauth")
            .is_none(),
        "an account the bundle dropped is gone"
    );
    for token in &tokens {
        let info = auth.get_access_token(token, None).await.expect("token");
        assert_eq!(info.map(|t| t.user_id), Some(id), "tokens keep working");
    }
}

/// A user from another store lands with its id; int ids move the store's counter past it;
/// a taken email or OAuth account is refused with nothing written.
pub async fn users_import_into_a_store_that_never_saw_them(f: &Fixture) {
    let store = f.transfer().as_ref();
    let kind = store.id_kind();
    let source = MemoryStore::with_id_kind(kind);
    let source_fixture = Fixture::memory(Arc::new(source));
    let (id, tokens) = rich_user(&source_fixture, "ada@example.com").await;
    let source = source_fixture.transfer().as_ref();
    let bundle = source
        .export_user(id)
        .await
        .expect("export")
        .expect("found");
    // Push int ids far ahead, so the store must move its own counter past them.
    let mut far = bundle.clone();
    if kind == IdKind::Int {
        far = renumber(far, UserId::Int(500));
    }
    assert_eq!(
        store.import_user(&far).await.expect("import"),
        Imported::Created
    );
    assert_eq!(
        store.export_user(far.user.id).await.expect("export"),
        Some(far.clone())
    );
    assert_eq!(
        store.import_user(&far).await.expect("import"),
        Imported::Unchanged
    );
    if kind == IdKind::Int {
        let next = f
            .auth
            .create_user(NewUser::new("next@example.com", "h"))
            .await
            .expect("create after import");
        assert_matches!(
            next.id,
            UserId::Int(n) if n > 500,
            "a new user after an imported id 500 got {}",
            next.id
        );
    } else {
        for token in &tokens {
            let info = f.auth.get_access_token(token, None).await.expect("token");
            assert_eq!(info.map(|t| t.user_id), Some(id));
        }
    }

    // Another user with the same email in another case: refused, nothing written.
    let mut rival = renumber(far.clone(), another_id(kind));
    rival.user.email = "ADA@example.com".into();
    rival.oauth_accounts.clear();
    rival.access_tokens.clear();
    assert_matches!(
        store.import_user(&rival).await,
        Err(Error::AlreadyExists { what: "email" })
    );
    assert_eq!(
        store.export_user(rival.user.id).await.expect("export"),
        None
    );

    // Another user holding one of the OAuth accounts: refused, nothing written.
    let mut thief = renumber(far.clone(), another_id(kind));
    thief.user.email = "thief@example.com".into();
    thief.access_tokens.clear();
    assert_matches!(
        store.import_user(&thief).await,
        Err(Error::AlreadyExists {
            what: "oauth account"
        })
    );
    assert_eq!(
        store.export_user(thief.user.id).await.expect("export"),
        None
    );
    assert!(
        f.auth
            .get_user_by_email("thief@example.com")
            .await
            .expect("by email")
            .is_none()
    );

    // A bundle of the other id kind is bad input.
    let other_kind = match kind {
        IdKind::Uuid => UserId::Int(7),
        IdKind::Int => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
    };
    assert_matches!(
        store.import_user(&renumber(far, other_kind)).await,
        Err(Error::InvalidInput { .. })
    );
}

/// An id of the store's kind that no case creates.
fn another_id(kind: IdKind) -> UserId {
    match kind {
        IdKind::Uuid => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
        IdKind::Int => UserId::Int(900),
    }
}

/// The bundle under another id, its accounts and tokens following.
fn renumber(mut bundle: UserBundle, id: UserId) -> UserBundle {
    bundle.user.id = id;
    for account in &mut bundle.oauth_accounts {
        account.user_id = id;
    }
    for token in &mut bundle.access_tokens {
        token.token.user_id = id;
    }
    bundle
}

fn catalogue() -> TableSchema {
    TableSchema::builder("copied_things", KeyDef::text("id"))
        .sort_key(KeyDef::int("n"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::float("at")))
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

async fn records_of(store: &dyn TableStore, schema: &TableSchema) -> Vec<Record> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .scan(schema, &crate::tables::scan_page(100, cursor.as_deref()))
            .await
            .expect("scan");
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    all
}

/// Tables are listed with their shapes, and records copy out and back at their versions,
/// unique indexes holding; a unique value held by another record is refused.
pub async fn records_copy_with_their_versions_and_tables(f: &Fixture) {
    let store = f.transfer().as_ref();
    let tables = f.tables().as_ref();
    let schema = catalogue();
    tables.ensure_table(&schema).await.expect("ensure");
    for i in 0..30_i64 {
        let doc = json!({"id": format!("p{}", i % 10), "n": i / 10, "group": "g",
            "at": 0.5 + f64::from(i32::try_from(i).expect("small")), "sku": format!("s{i}")});
        let record = tables
            .put(&schema, doc.as_object().cloned().expect("object"))
            .await
            .expect("put");
        if i % 3 == 0 {
            tables
                .put(&schema, record.document)
                .await
                .expect("second version");
        }
    }
    let listed = store.tables().await.expect("tables");
    let found = listed
        .iter()
        .find(|t| t.name() == schema.name())
        .expect("the table is listed");
    assert_eq!(found.shape(), schema.shape(), "its shape from the catalog");

    // Out to the reference through the rebuilt schema, and back into a fresh table.
    let original = records_of(tables, &schema).await;
    assert_eq!(original.len(), 30);
    assert!(original.iter().any(|r| r.version == 2));
    let reference = MemoryStore::new();
    reference.ensure_table(found).await.expect("ensure");
    reference
        .import_records(found, &original)
        .await
        .expect("import");
    assert_eq!(records_of(&reference, found).await, original);
    tables.drop_table(&schema).await.expect("drop");
    tables.ensure_table(found).await.expect("ensure again");
    let copied = records_of(&reference, found).await;
    store.import_records(found, &copied).await.expect("import");
    store
        .import_records(found, &copied)
        .await
        .expect("importing again is harmless");
    assert_eq!(records_of(tables, &schema).await, original);
    // The unique index holds after the import, and a write continues the version.
    let held = tables
        .get_by_unique(
            &schema,
            "sku",
            &[storekit_core::table::KeyValue::Text("s3".into())],
        )
        .await
        .expect("by unique")
        .expect("held");
    assert_eq!(held.version, 2);
    let next = tables.put(&schema, held.document).await.expect("put");
    assert_eq!(next.version, 3);

    // A record taking another's unique value is refused and not written.
    let mut thief = copied[0].clone();
    thief.document.insert("id".into(), json!("thief"));
    thief
        .document
        .insert("sku".into(), copied[1].document["sku"].clone());
    thief.key = schema.key_of(&thief.document).expect("key");
    assert_matches!(
        store.import_records(found, &[thief.clone()]).await,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    assert_eq!(tables.get(&schema, &thief.key).await.expect("get"), None);
    // A record whose key does not match its document, or at version 0, is bad input.
    let mut wrong = copied[0].clone();
    wrong.key = copied[1].key.clone();
    assert_matches!(
        store.import_records(found, &[wrong]).await,
        Err(Error::InvalidInput { .. })
    );
    let mut zero = copied[0].clone();
    zero.version = 0;
    assert_matches!(
        store.import_records(found, &[zero]).await,
        Err(Error::InvalidInput { .. })
    );
    tables.drop_table(&schema).await.expect("drop");
}

/// 32 tasks import users of one email under 32 ids (one wins, the rest are refused with
/// nothing written), then 32 versions of the winner at once (it ends equal to one of them,
/// never a mix), then 32 versions of one record holding 32 different unique values (it ends
/// at one of them, holding only that value).
pub async fn racing_imports_leave_one_whole_winner(f: &Fixture) {
    let store = f.transfer();
    let kind = store.id_kind();
    let source = Fixture::memory(Arc::new(MemoryStore::with_id_kind(kind)));
    let (id, _) = rich_user(&source, "race@example.com").await;
    let template = source
        .transfer()
        .export_user(id)
        .await
        .expect("export")
        .expect("found");
    let ids: Vec<UserId> = (0..32_i64)
        .map(|i| match kind {
            IdKind::Uuid => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
            IdKind::Int => UserId::Int(2_000 + i),
        })
        .collect();
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let mut bundle = renumber(template.clone(), id);
            bundle.user.email = if i % 2 == 0 {
                "RACE@example.com".into()
            } else {
                "race@EXAMPLE.com".into()
            };
            let store = Arc::clone(store);
            tokio::spawn(async move { (bundle.clone(), store.import_user(&bundle).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (bundle, Ok(Imported::Created)) => winners.push(bundle),
            (_, Err(Error::AlreadyExists { .. })) => {}
            (_, other) => panic!("an import answered {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one user per email");
    let winner = winners.remove(0);
    for &id in &ids {
        let stored = store.export_user(id).await.expect("export");
        if id == winner.user.id {
            assert_eq!(stored.as_ref(), Some(&winner));
        } else {
            assert_eq!(stored, None, "a refused import wrote nothing");
        }
    }
    let by_email = f
        .auth
        .get_user_by_email("race@example.com")
        .await
        .expect("by email");
    assert_eq!(by_email.map(|u| u.id), Some(winner.user.id));

    // 32 versions of the winner at once: each bundle's fields, accounts and tokens carry its
    // number, so a stored mix of two shows.
    let versions: Vec<UserBundle> = (0..32_u64)
        .map(|i| {
            let mut bundle = winner.clone();
            bundle.user.version = 10 + i;
            bundle.user.extra = json!({"i": i}).as_object().cloned().expect("object");
            bundle.oauth_accounts.truncate(1);
            bundle.oauth_accounts[0].account_email = format!("v{i}@example.com");
            bundle
        })
        .collect();
    let tasks: Vec<_> = versions
        .iter()
        .cloned()
        .map(|bundle| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.import_user(&bundle).await })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("task")
            .expect("an import of the same id succeeds");
    }
    let stored = store
        .export_user(winner.user.id)
        .await
        .expect("export")
        .expect("found");
    assert!(
        versions.contains(&stored),
        "the stored user is one whole bundle: {stored:?}"
    );

    // 32 versions of one record, each with its own sku.
    let schema = catalogue();
    f.tables().ensure_table(&schema).await.expect("ensure");
    let records: Vec<Record> = (0..32_u64)
        .map(|i| {
            let document = json!({"id": "contested", "n": 1, "group": "g", "at": 1.5,
                "sku": format!("race-{i}")})
            .as_object()
            .cloned()
            .expect("object");
            Record {
                key: schema.key_of(&document).expect("key"),
                version: 1 + i,
                document,
            }
        })
        .collect();
    let tasks: Vec<_> = records
        .iter()
        .cloned()
        .map(|record| {
            let (store, schema) = (Arc::clone(store), schema.clone());
            tokio::spawn(async move { store.import_records(&schema, &[record]).await })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("task")
            .expect("an import of the same key succeeds");
    }
    let tables = f.tables().as_ref();
    let stored = tables
        .get(&schema, &records[0].key)
        .await
        .expect("get")
        .expect("the record");
    assert!(records.contains(&stored), "one whole record: {stored:?}");
    for record in &records {
        let sku = storekit_core::table::KeyValue::Text(
            record.document["sku"].as_str().expect("sku").to_owned(),
        );
        let holder = tables
            .get_by_unique(&schema, "sku", &[sku])
            .await
            .expect("by unique");
        if record.version == stored.version {
            assert_eq!(holder.as_ref(), Some(&stored), "its sku finds it");
        } else {
            assert_eq!(holder, None, "sku {} was freed", record.document["sku"]);
        }
    }
    tables.drop_table(&schema).await.expect("drop");
}
