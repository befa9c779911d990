//! Records that expire ([`TableSchemaBuilder::ttl`](storekit_core::table::TableSchemaBuilder::ttl)):
//! an expired record is never returned by any read, never counted, and frees its key and
//! unique values, on every backend, whether or not the database has deleted it yet.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use storekit_core::table::{
    Condition, Document, KeyDef, KeyValue, Query, Record, RecordKey, TableSchema, TableStore,
};

use crate::Fixture;
use crate::expressions::{all_pages, numbers};
use crate::tables::settled;
use crate::tables::{doc, get};

/// `sessions`: partition `user`, sort `n`, the query index `by-kind` on (`kind`, `n`), the
/// unique index `token`, and records expiring at `expires_at`.
fn schema() -> TableSchema {
    TableSchema::builder("sessions", KeyDef::text("user"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("n")))
        .unique("token", [KeyDef::text("token")])
        .ttl("expires_at")
        .build()
        .expect("valid schema")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn key(user: &str, n: i64) -> RecordKey {
    RecordKey::with_sort(user, n)
}

async fn ensure(f: &Fixture) -> (&dyn TableStore, TableSchema) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    (store, schema)
}

/// Every page of a scan and the size of each.
async fn all_scanned(
    store: &dyn TableStore,
    schema: &TableSchema,
    limit: usize,
) -> (Vec<Record>, Vec<usize>) {
    let (mut records, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let page = store
            .scan(schema, &crate::tables::scan_page(limit, cursor.as_deref()))
            .await
            .expect("scan");
        sizes.push(page.items.len());
        records.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (records, sizes),
        }
        assert!(sizes.len() < 1000, "the pages do not end");
    }
}

/// Only the last page may be short, and only a single page may be empty.
fn full(sizes: &[usize], limit: usize) -> bool {
    let (last, rest) = sizes.split_last().expect("a page");
    rest.iter().all(|&s| s == limit) && (*last > 0 || sizes.len() == 1) && *last <= limit
}

/// Over 30 records of which every third has expired (and a third never expires), no read
/// returns an expired one: get, get_many, contains, get_by_unique, table and index queries
/// (filtered or not, pages full), scans (pages full) and count.
pub async fn expired_records_are_never_read(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let at = now();
    for n in 0..30_i64 {
        let mut record =
            json!({"user": "u", "n": n, "m": n, "kind": "k", "token": format!("t{n}")});
        match n % 3 {
            0 => record["expires_at"] = json!(at - 60.0),
            1 => record["expires_at"] = json!(at + 3600.0),
            // No expiry, and one that is not a number: neither ever expires.
            _ if n == 2 => record["expires_at"] = json!("soon"),
            _ => {}
        }
        store.put(&schema, doc(record)).await.expect("put");
    }
    let live: Vec<i64> = (0..30).filter(|n| n % 3 != 0).collect();

    assert_eq!(get(store, &schema, &key("u", 0)).await, None);
    assert!(get(store, &schema, &key("u", 1)).await.is_some());
    assert!(get(store, &schema, &key("u", 2)).await.is_some());
    assert!(
        !store
            .contains(&schema, &key("u", 3))
            .await
            .expect("contains")
    );
    assert!(
        store
            .contains(&schema, &key("u", 4))
            .await
            .expect("contains")
    );
    let many = store
        .get_many(
            &schema,
            &[key("u", 0), key("u", 1), key("u", 3), key("u", 5)],
        )
        .await
        .expect("get_many");
    assert_eq!(
        many.iter().map(Option::is_some).collect::<Vec<_>>(),
        [false, true, false, true]
    );
    assert_eq!(
        store
            .get_by_unique(&schema, "token", &[KeyValue::from("t6")])
            .await
            .expect("get_by_unique"),
        None
    );
    assert!(
        store
            .get_by_unique(&schema, "token", &[KeyValue::from("t7")])
            .await
            .expect("get_by_unique")
            .is_some()
    );

    for limit in [1, 3, 7, 100] {
        let query = Query::table("u").limit(limit);
        let (records, sizes) = all_pages(store, &schema, &query).await;
        assert_eq!(numbers(&records), live, "table query, limit {limit}");
        assert!(full(&sizes, limit), "table query pages {sizes:?}");
        let (records, sizes) = all_pages(store, &schema, &query.clone().descending()).await;
        let mut reversed = live.clone();
        reversed.reverse();
        assert_eq!(numbers(&records), reversed, "descending, limit {limit}");
        assert!(full(&sizes, limit), "descending pages {sizes:?}");
        let (records, sizes) = all_scanned(store, &schema, limit).await;
        let mut scanned = numbers(&records);
        scanned.sort_unstable();
        assert_eq!(scanned, live, "scan, limit {limit}");
        assert!(full(&sizes, limit), "scan pages {sizes:?}");
    }
    let filtered = Query::table("u")
        .filter(Condition::lt("m", json!(10)))
        .limit(2);
    let (records, sizes) = all_pages(store, &schema, &filtered).await;
    assert_eq!(numbers(&records), [1, 2, 4, 5, 7, 8]);
    assert!(full(&sizes, 2), "filtered pages {sizes:?}");

    let by_kind = Query::index("by-kind", "k").limit(100);
    let page = settled(store, &schema, &by_kind, |p| p.items.len() == live.len()).await;
    assert_eq!(numbers(&page.items), live, "index query");
    let page = settled(store, &schema, &by_kind.clone().limit(4), |p| {
        p.items.len() == 4 && numbers(&p.items) == live[..4]
    })
    .await;
    assert_eq!(numbers(&page.items), live[..4], "a full index page");

    assert_eq!(
        store.count(&schema).await.expect("count"),
        live.len() as u64
    );
}

/// A partition where 59 of 60 records have expired: pages of a query and of a scan are still
/// full, and every live record comes once.
pub async fn pages_stay_full_around_expired_records(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let at = now();
    for n in 0..120_i64 {
        let expires = if n % 20 == 5 { at + 3600.0 } else { at - 1.0 };
        let record =
            json!({"user": "sparse", "n": n, "expires_at": expires, "pad": "x".repeat(100)});
        store.put(&schema, doc(record)).await.expect("put");
    }
    let live: Vec<i64> = (0..120).filter(|n| n % 20 == 5).collect();
    for limit in [1, 2, 4] {
        let (records, sizes) =
            all_pages(store, &schema, &Query::table("sparse").limit(limit)).await;
        assert_eq!(numbers(&records), live, "limit {limit}");
        assert!(full(&sizes, limit), "pages {sizes:?} at limit {limit}");
        let (records, sizes) = all_scanned(store, &schema, limit).await;
        let mut scanned = numbers(&records);
        scanned.sort_unstable();
        assert_eq!(scanned, live, "scan, limit {limit}");
        assert!(full(&sizes, limit), "scan pages {sizes:?} at limit {limit}");
    }
    assert_eq!(store.count(&schema).await.expect("count"), 6);
}

/// An expired record frees its key and its unique values: an insert of either succeeds as if
/// it were gone, and the new record is the one read.
pub async fn expired_records_free_their_key_and_unique_values(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let at = now();
    let old = json!({"user": "a", "n": 1, "token": "shared", "expires_at": at - 10.0});
    store.insert(&schema, doc(old)).await.expect("insert");
    let other = json!({"user": "a", "n": 2, "token": "mine", "expires_at": at - 10.0});
    store.insert(&schema, doc(other)).await.expect("insert");

    // The same key.
    let again = json!({"user": "a", "n": 1, "token": "fresh", "expires_at": at + 3600.0});
    let inserted = store
        .insert(&schema, doc(again))
        .await
        .expect("insert over expired");
    assert_eq!(inserted.document["token"], "fresh");
    let read = get(store, &schema, &key("a", 1)).await;
    assert_eq!(
        read.map(|r| r.document["token"].clone()),
        Some(json!("fresh"))
    );

    // A unique value an expired record holds.
    let taker = json!({"user": "b", "n": 1, "token": "mine"});
    store
        .insert(&schema, doc(taker))
        .await
        .expect("insert of an expired unique value");
    let holder = store
        .get_by_unique(&schema, "token", &[KeyValue::from("mine")])
        .await
        .expect("get_by_unique")
        .expect("the new holder");
    assert_eq!(holder.key, key("b", 1));
    let upsert = json!({"user": "c", "n": 1, "token": "shared"});
    store
        .put(&schema, doc(upsert))
        .await
        .expect("put of an expired unique value");

    // A live record keeps both.
    let live = json!({"user": "a", "n": 1, "token": "other"});
    assert_matches!(
        store.insert(&schema, doc(live)).await,
        Err(storekit_core::Error::AlreadyExists { .. })
    );
    let live = json!({"user": "z", "n": 1, "token": "fresh"});
    assert_matches!(
        store.insert(&schema, doc(live)).await,
        Err(storekit_core::Error::AlreadyExists { .. })
    );
    assert_eq!(store.count(&schema).await.expect("count"), 3);
}

/// A record that expires during the test: read while alive, then no longer read, counted or
/// holding its unique value.
pub async fn records_expire_while_the_store_runs(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let expires = now() + 2.0;
    let record =
        json!({"user": "soon", "n": 1, "kind": "k", "token": "brief", "expires_at": expires});
    store.insert(&schema, doc(record)).await.expect("insert");
    assert!(get(store, &schema, &key("soon", 1)).await.is_some());
    assert_eq!(store.count(&schema).await.expect("count"), 1);
    let wait = (expires - now()).max(0.0) + 0.2;
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    assert_eq!(get(store, &schema, &key("soon", 1)).await, None);
    assert!(
        !store
            .contains(&schema, &key("soon", 1))
            .await
            .expect("contains")
    );
    assert!(
        store
            .query(&schema, &Query::table("soon"))
            .await
            .expect("query")
            .items
            .is_empty()
    );
    assert_eq!(store.count(&schema).await.expect("count"), 0);
    assert_eq!(
        store
            .get_by_unique(&schema, "token", &[KeyValue::from("brief")])
            .await
            .expect("get_by_unique"),
        None
    );
    let next = json!({"user": "later", "n": 1, "token": "brief"});
    store
        .insert(&schema, doc(next))
        .await
        .expect("the unique value is free");
    assert!(
        store
            .update(&schema, &key("soon", 1), &mut |d| Ok(d))
            .await
            .is_err()
    );
}

/// `batched`: partition `id`, no unique index (so DynamoDB sends `BatchWriteItem`).
fn plain() -> TableSchema {
    TableSchema::builder("batched", KeyDef::text("id"))
        .build()
        .expect("valid schema")
}

/// `put_many` writes every record at version 1, then at version 2, in the order given;
/// `delete_many` deletes every one it names and skips missing keys; empty batches do
/// nothing; over 1,000 items or a key named twice is `InvalidInput` with nothing written.
pub async fn put_many_and_delete_many_round_trip(f: &Fixture) {
    use storekit_core::Error;
    use storekit_core::table::MAX_BATCH;
    let schema = plain();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let documents = |round: i64| -> Vec<Document> {
        (0..60)
            .map(|i| doc(json!({"id": format!("r{i:02}"), "round": round})))
            .collect()
    };
    let written = store
        .put_many(&schema, documents(1))
        .await
        .expect("put_many");
    assert_eq!(written.len(), 60);
    assert!(written.iter().all(|r| r.version == 1));
    assert_eq!(written[7].key, RecordKey::new("r07"));
    let written = store
        .put_many(&schema, documents(2))
        .await
        .expect("put_many");
    assert!(
        written.iter().all(|r| r.version == 2),
        "versions are bumped"
    );
    let keys: Vec<RecordKey> = (0..60)
        .map(|i| RecordKey::new(format!("r{i:02}")))
        .collect();
    let read = store.get_many(&schema, &keys).await.expect("get_many");
    assert!(read.iter().all(|r| {
        r.as_ref()
            .is_some_and(|r| r.version == 2 && r.document["round"] == 2)
    }));

    let mut doomed: Vec<RecordKey> = keys[..30].to_vec();
    doomed.push(RecordKey::new("never-written"));
    store
        .delete_many(&schema, &doomed)
        .await
        .expect("delete_many");
    assert_eq!(store.count(&schema).await.expect("count"), 30);
    assert_eq!(get(store, &schema, &keys[0]).await, None);
    assert!(get(store, &schema, &keys[30]).await.is_some());

    assert!(
        store
            .put_many(&schema, Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
    store.delete_many(&schema, &[]).await.expect("empty");

    let too_many: Vec<Document> = (0..=MAX_BATCH)
        .map(|i| doc(json!({"id": format!("x{i}")})))
        .collect();
    assert_matches!(
        store.put_many(&schema, too_many).await,
        Err(Error::InvalidInput {
            what: "documents",
            ..
        })
    );
    let twice = vec![doc(json!({"id": "d"})), doc(json!({"id": "d"}))];
    assert_matches!(
        store.put_many(&schema, twice).await,
        Err(Error::InvalidInput {
            what: "documents",
            ..
        })
    );
    let too_many_keys: Vec<RecordKey> = (0..=MAX_BATCH)
        .map(|i| RecordKey::new(format!("x{i}")))
        .collect();
    assert_matches!(
        store.delete_many(&schema, &too_many_keys).await,
        Err(Error::InvalidInput { what: "keys", .. })
    );
    let bad_key = [RecordKey::new(7)];
    assert_matches!(
        store.delete_many(&schema, &bad_key).await,
        Err(Error::InvalidInput { what: "key", .. })
    );
    assert_eq!(
        store.count(&schema).await.expect("count"),
        30,
        "refused batches wrote nothing"
    );
}

/// A batch whose last record takes a unique value another record holds fails with
/// `AlreadyExists`: on SQL and memory nothing of it is written; on DynamoDB (one write per
/// record on a table with unique indexes) the records before it are. A batch with an invalid
/// document is refused before anything is written, everywhere. A batch may take the unique
/// values of expired records.
pub async fn a_failing_batch_is_all_or_nothing_where_atomic(f: &Fixture) {
    use storekit_core::Error;
    let (store, schema) = ensure(f).await;
    let holder = json!({"user": "h", "n": 0, "token": "taken"});
    store.insert(&schema, doc(holder)).await.expect("insert");
    let batch = vec![
        doc(json!({"user": "b", "n": 1, "token": "t1"})),
        doc(json!({"user": "b", "n": 2, "token": "t2"})),
        doc(json!({"user": "b", "n": 3, "token": "taken"})),
    ];
    assert_matches!(
        store.put_many(&schema, batch).await,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    let written = store
        .get_many(&schema, &[key("b", 1), key("b", 2), key("b", 3)])
        .await
        .expect("get_many");
    let present: Vec<bool> = written.iter().map(Option::is_some).collect();
    if f.capabilities.atomic_record_batches {
        assert_eq!(present, [false, false, false], "all or nothing");
    } else {
        assert_eq!(present, [true, true, false], "in order, up to the failure");
    }

    let invalid = vec![
        doc(json!({"user": "c", "n": 1})),
        doc(json!({"user": "c", "n": "not an int"})),
    ];
    assert_matches!(
        store.put_many(&schema, invalid).await,
        Err(Error::InvalidInput { .. })
    );
    assert_eq!(get(store, &schema, &key("c", 1)).await, None);

    let expired = json!({"user": "e", "n": 1, "token": "old", "expires_at": now() - 5.0});
    store.insert(&schema, doc(expired)).await.expect("insert");
    let batch = vec![doc(json!({"user": "e", "n": 2, "token": "old"}))];
    let written = store
        .put_many(&schema, batch)
        .await
        .expect("takes an expired value");
    assert_eq!(written[0].version, 1);
}
