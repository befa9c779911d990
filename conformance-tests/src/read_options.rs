//! Read options (issue 23, items 5 and 7): eventually consistent reads, counts of one
//! partition or index range, parallel scan segments, and a table's named version attribute.
//!
//! What may differ between backends is said by the store itself, never by a loose assertion:
//! an eventual read is read-after-write wherever [`TableStore::eventual_reads`] says so
//! (SQLite, PostgreSQL, memory) and may only be stale where it says
//! [`Consistency::Eventual`] (DynamoDB, and memory simulating index lag): there it must
//! return a version that was written, and catch up with the last one within seconds.
//!
//! [`TableStore::eventual_reads`]: storekit_core::table::TableStore::eventual_reads

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{
    Condition, Consistency, KeyDef, KeyValue, MAX_SEGMENTS, Patch, Projection, Query, ReadOptions,
    Record, RecordKey, Scan, SortCondition, Table, TableSchema, TableStore, scan_stream_parallel,
};

use crate::Fixture;
use crate::tables::doc;

/// How long an eventual read may take to show the last write before the case fails.
const CATCH_UP: Duration = Duration::from_secs(10);

fn eventual() -> ReadOptions {
    ReadOptions::new().consistency(Consistency::Eventual)
}

/// `readopts`: partition `p`, sort `n`, a query index by `g` sorted by `n`.
fn schema() -> TableSchema {
    TableSchema::builder("readopts", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
        .build()
        .expect("valid schema")
}

fn invalid(result: &Result<impl std::fmt::Debug, Error>, what: &str) -> bool {
    matches!(result, Err(Error::InvalidInput { what: w, .. }) if *w == what)
}

/// Reads `read()` until it returns `want`, within [`CATCH_UP`]; every answer before must be
/// one of `allowed` (a version that was written). Where eventual reads are read-after-write
/// the first answer must already be `want`.
async fn settles<F, Fut>(
    store: &dyn TableStore,
    allowed: &[Option<u64>],
    want: Option<u64>,
    read: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let seen = read().await;
        if seen == want {
            return;
        }
        assert!(
            store.eventual_reads() == Consistency::Eventual,
            "an eventual read on a read-after-write store returned {seen:?}, not {want:?}"
        );
        assert!(
            allowed.contains(&seen),
            "an eventual read returned {seen:?}, never written"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "an eventual read still returns {seen:?}, not {want:?}, after {CATCH_UP:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Eventual reads by key, of a page, of a scan: read-after-write where the store says so,
/// else some version written that catches up; the default read is read-after-write
/// everywhere.
pub async fn eventual_reads_are_fresh_where_the_store_says_so(f: &Fixture) {
    let store = f.tables().as_ref();
    let schema = schema();
    store.ensure_table(&schema).await.expect("ensure_table");
    let key = RecordKey::with_sort("a", 1);
    let version = |record: Option<Record>| record.map(|r| r.version);
    let mut allowed = vec![None];
    for round in 0..3_i64 {
        let written = store
            .put(
                &schema,
                doc(json!({"p": "a", "n": 1, "g": "x", "round": round})),
            )
            .await
            .expect("put");
        allowed.push(Some(written.version));
        let want = Some(written.version);
        // The default read sees the write at once, on every backend.
        let now = store.get(&schema, &key).await.expect("get");
        assert_eq!(version(now), want);
        settles(store, &allowed, want, || async {
            version(
                store
                    .get_with(&schema, &key, &eventual())
                    .await
                    .expect("get_with"),
            )
        })
        .await;
        settles(store, &allowed, want, || async {
            let many = store
                .get_many_with(
                    &schema,
                    &[key.clone(), RecordKey::with_sort("a", 2)],
                    &eventual(),
                )
                .await
                .expect("get_many_with");
            assert_eq!(many.len(), 2);
            assert!(many[1].is_none(), "a key never written");
            version(many.into_iter().next().flatten())
        })
        .await;
        settles(store, &allowed, want, || async {
            let query = Query::table("a").consistency(Consistency::Eventual);
            let page = store.query(&schema, &query).await.expect("query");
            version(page.items.into_iter().next())
        })
        .await;
        settles(store, &allowed, want, || async {
            let scan = Scan::new().consistency(Consistency::Eventual);
            let page = store.scan(&schema, &scan).await.expect("scan");
            version(page.items.into_iter().next())
        })
        .await;
    }
    // Projected, eventually: the selected paths and the keys, as a consistent read gives.
    let select = eventual().select(["round"]);
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let found = store
            .get_with(&schema, &key, &select)
            .await
            .expect("get_with")
            .map(|r| serde_json::Value::Object(r.document));
        if found == Some(json!({"p": "a", "n": 1, "round": 2})) {
            break;
        }
        assert_eq!(store.eventual_reads(), Consistency::Eventual, "{found:?}");
        assert!(tokio::time::Instant::now() < deadline, "{found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A deleted record: gone for the default read at once, and for an eventual one in time.
    store.delete(&schema, &key, None).await.expect("delete");
    assert_eq!(store.get(&schema, &key).await.expect("get"), None);
    settles(store, &allowed, None, || async {
        version(
            store
                .get_with(&schema, &key, &eventual())
                .await
                .expect("get_with"),
        )
    })
    .await;
    // Options are checked as the plain reads check them.
    let bad = store
        .get_with(&schema, &RecordKey::new("no sort key"), &eventual())
        .await;
    assert!(invalid(&bad, "key"), "{bad:?}");
    let bad = store
        .get_with(&schema, &key, &eventual().select(["a", "a.b"]))
        .await;
    assert!(invalid(&bad, "projection"), "{bad:?}");
}

/// Counts of a partition, a sort range, a filtered range and an index partition equal the
/// records a query pages through; expired records are not counted; what a count cannot
/// honour is refused.
pub async fn partition_counts_match_the_records_of_the_range(f: &Fixture) {
    let store = f.tables().as_ref();
    let schema = TableSchema::builder("counts", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
        .ttl("expires_at")
        .build()
        .expect("valid schema");
    store.ensure_table(&schema).await.expect("ensure_table");
    let far = 4_102_444_800_u64; // 2100
    let documents: Vec<_> = (0..120_i64)
        .map(|n| {
            let mut record = json!({
                "p": format!("p{}", n % 3),
                "n": n,
                "odd": n % 2 == 1,
                "expires_at": if n % 10 == 9 { 1 } else { far },
            });
            if n % 4 == 0 {
                record["g"] = json!("quarter");
            }
            doc(record)
        })
        .collect();
    store
        .put_many(&schema, documents.clone())
        .await
        .expect("put_many");
    let live = |n: &i64| n % 10 != 9;
    let expect =
        |keep: &dyn Fn(i64) -> bool| (0..120).filter(live).filter(|&n| keep(n)).count() as u64;
    let count = |query: Query| counted(store, &schema, query);
    assert_eq!(
        count(Query::table("p0")).await.expect("count"),
        expect(&|n| n % 3 == 0)
    );
    assert_eq!(count(Query::table("none")).await.expect("count"), 0);
    let late = Query::table("p1").sort(SortCondition::Ge(KeyValue::Int(60)));
    assert_eq!(
        count(late).await.expect("count"),
        expect(&|n| n % 3 == 1 && n >= 60)
    );
    let odd = Query::table("p2").filter(Condition::eq("odd", true));
    assert_eq!(
        count(odd.clone()).await.expect("count"),
        expect(&|n| n % 3 == 2 && n % 2 == 1)
    );
    // A count agrees with the records a query pages through.
    let paged =
        storekit_core::table::query_stream(f.tables().clone(), schema.clone(), odd.limit(7))
            .try_collect::<Vec<_>>()
            .await
            .expect("query_stream");
    assert_eq!(paged.len() as u64, expect(&|n| n % 3 == 2 && n % 2 == 1));
    // Eventually consistent on the table: the same answer, the records being settled.
    let cheap = Query::table("p0").consistency(Consistency::Eventual);
    let want = expect(&|n| n % 3 == 0);
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while count(cheap.clone()).await.expect("count") != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an eventual count never settles"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An index range: eventual where the store's indexes are, so it is awaited there.
    let index = Query::index("by-g", "quarter")
        .sort(SortCondition::Between(KeyValue::Int(20), KeyValue::Int(99)));
    let want = expect(&|n| n % 4 == 0 && (20..=99).contains(&n));
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let counted = count(index.clone()).await.expect("count");
        if counted == want {
            break;
        }
        assert_eq!(
            store.index_consistency(),
            Consistency::Eventual,
            "a read-after-write index counted {counted}, not {want}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "counted {counted}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The whole table, for comparison: every live record.
    assert_eq!(
        store.count(&schema).await.expect("count"),
        expect(&|_| true)
    );
    // What a count cannot honour.
    let first = store
        .query(&schema, &Query::table("p0").limit(2))
        .await
        .expect("query");
    let cursor = first.next.expect("a second page");
    let refused = count(Query::table("p0").after(cursor)).await;
    assert!(invalid(&refused, "cursor"), "{refused:?}");
    let refused = count(Query::table("p0").read_budget(10)).await;
    assert!(invalid(&refused, "read budget"), "{refused:?}");
    let refused = count(Query::index("by-g", "quarter").verified()).await;
    assert!(invalid(&refused, "query"), "{refused:?}");
    let refused = count(Query::table(5_i64)).await;
    assert!(invalid(&refused, "key"), "{refused:?}");
    let refused = count(Query::index("no-such-index", "x")).await;
    assert!(refused.is_err(), "{refused:?}");
}

async fn counted(store: &dyn TableStore, schema: &TableSchema, query: Query) -> Result<u64, Error> {
    store.count_query(schema, &query).await
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    id: i64,
    kind: String,
}

/// Every split of the table into segments covers it once: each record in exactly one
/// segment, whatever the page size; cursors stay in their segment; a parallel stream reads
/// every record once.
pub async fn parallel_scan_segments_cover_the_table_once(f: &Fixture) {
    let store = f.tables().as_ref();
    let schema = TableSchema::builder("segments", KeyDef::int("id"))
        .build()
        .expect("valid schema");
    store.ensure_table(&schema).await.expect("ensure_table");
    let all: BTreeSet<i64> = (0..150).collect();
    for chunk in all.iter().copied().collect::<Vec<_>>().chunks(50) {
        let documents = chunk
            .iter()
            .map(|id| doc(json!({"id": id, "kind": if id % 3 == 0 { "a" } else { "b" }})))
            .collect();
        store.put_many(&schema, documents).await.expect("put_many");
    }
    let id = |record: &Record| record.document["id"].as_i64().expect("id");
    for total in [1_u32, 2, 5] {
        let mut seen = Vec::new();
        for segment in 0..total {
            let mut scan = Scan::new().limit(13).segment(segment, total);
            loop {
                let page = store.scan(&schema, &scan).await.expect("scan");
                seen.extend(page.items.iter().map(id));
                match page.next {
                    Some(next) => scan = scan.after(next),
                    None => break,
                }
            }
        }
        let distinct: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            seen.len(),
            distinct.len(),
            "{total} segments: a record came twice"
        );
        assert_eq!(distinct, all, "{total} segments do not cover the table");
    }
    // Filtered and eventual segments: the records of the filter, once (in time, where
    // eventual reads may lag).
    let want: Vec<i64> = all.iter().copied().filter(|id| id % 3 == 0).collect();
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let mut kind_a = Vec::new();
        for segment in 0..3 {
            let scan = Scan::new()
                .segment(segment, 3)
                .filter(Condition::eq("kind", "a"))
                .consistency(Consistency::Eventual)
                .limit(1000);
            kind_a.extend(
                store
                    .scan(&schema, &scan)
                    .await
                    .expect("scan")
                    .items
                    .iter()
                    .map(id),
            );
        }
        kind_a.sort_unstable();
        if kind_a == want {
            break;
        }
        assert_eq!(store.eventual_reads(), Consistency::Eventual, "{kind_a:?}");
        assert!(tokio::time::Instant::now() < deadline, "{kind_a:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A cursor belongs to its segment.
    let first = store
        .scan(&schema, &Scan::new().limit(2).segment(0, 2))
        .await
        .expect("scan");
    let cursor = first.next.expect("a second page");
    let other = store
        .scan(
            &schema,
            &Scan::new().limit(2).segment(1, 2).after(cursor.clone()),
        )
        .await;
    assert!(invalid(&other, "cursor"), "{other:?}");
    let unsegmented = store
        .scan(&schema, &Scan::new().limit(2).after(cursor))
        .await;
    assert!(invalid(&unsegmented, "cursor"), "{unsegmented:?}");
    // Bad splits.
    for (segment, total) in [(2, 2), (0, 0), (0, MAX_SEGMENTS + 1)] {
        let bad = store
            .scan(&schema, &Scan::new().segment(segment, total))
            .await;
        assert!(invalid(&bad, "segment"), "({segment}, {total}): {bad:?}");
    }
    // Every segment at once, as one stream, untyped and typed.
    let streamed: Vec<Record> =
        scan_stream_parallel(f.tables().clone(), schema.clone(), Scan::new().limit(11), 4)
            .try_collect()
            .await
            .expect("scan_stream_parallel");
    let streamed: BTreeSet<i64> = streamed.iter().map(id).collect();
    assert_eq!(streamed, all);
    let events: Table<Event> = Table::new(f.tables().clone(), schema.clone());
    let typed: Vec<_> = events
        .scan_all_parallel(Scan::new().filter(Condition::eq("kind", "a")), 3)
        .try_collect()
        .await
        .expect("scan_all_parallel");
    assert_eq!(typed.len(), want.len());
    assert!(typed.iter().all(|e| e.record.kind == "a"));
    let refused: Result<Vec<_>, _> =
        scan_stream_parallel(f.tables().clone(), schema, Scan::new(), 0)
            .try_collect()
            .await;
    assert!(invalid(&refused, "segment"), "{refused:?}");
}

/// A table whose versions live in a named attribute (`version`, as a PynamoDB
/// `VersionAttribute` names it): versions count and conflict as always, the name is the
/// version's and no document's on every backend, and a table's attribute is fixed.
pub async fn a_named_version_attribute_is_the_version_and_no_field(f: &Fixture) {
    let store = f.tables().as_ref();
    let schema = TableSchema::builder("versioned", KeyDef::text("id"))
        .version_attribute("version")
        .build()
        .expect("valid schema");
    assert_eq!(schema.version_attribute(), "version");
    store.ensure_table(&schema).await.expect("ensure_table");
    let first = store
        .insert(&schema, doc(json!({"id": "a", "name": "lamp"})))
        .await
        .expect("insert");
    assert_eq!(first.version, 1);
    let second = store
        .replace(&schema, doc(json!({"id": "a", "name": "desk"})), 1)
        .await
        .expect("replace");
    assert_eq!(second.version, 2);
    let stale = store
        .replace(&schema, doc(json!({"id": "a", "name": "chair"})), 1)
        .await;
    assert!(matches!(stale, Err(Error::Conflict { .. })), "{stale:?}");
    let read = store
        .get(&schema, &RecordKey::new("a"))
        .await
        .expect("get")
        .expect("the record");
    assert_eq!((read.version, read.document.get("version")), (2, None));
    assert_eq!(read.document.get("name"), Some(&json!("desk")));
    let patched = store
        .patch(
            &schema,
            &RecordKey::new("a"),
            &Patch::new().set("name", "shelf"),
            Some(&Condition::eq("name", "desk")),
            storekit_core::table::Returning::None,
        )
        .await
        .expect("patch");
    assert_eq!(patched.version, 3);
    // The name is the version's: no document, condition, selection or patch may use it.
    let held = store
        .put(&schema, doc(json!({"id": "b", "version": 7})))
        .await;
    assert!(invalid(&held, "document"), "{held:?}");
    let tested = store
        .put_if(
            &schema,
            doc(json!({"id": "b"})),
            &Condition::eq("version", 1),
        )
        .await;
    assert!(invalid(&tested, "condition"), "{tested:?}");
    let selected = store
        .get_selected(&schema, &RecordKey::new("a"), &Projection::new(["version"]))
        .await;
    assert!(invalid(&selected, "projection"), "{selected:?}");
    let set = store
        .patch(
            &schema,
            &RecordKey::new("a"),
            &Patch::new().set("version", 9),
            None,
            storekit_core::table::Returning::None,
        )
        .await;
    assert!(invalid(&set, "patch"), "{set:?}");
    // Declared with another attribute later: a mismatch, never a silent switch.
    let other = TableSchema::builder("versioned", KeyDef::text("id"))
        .build()
        .expect("valid schema");
    let drifted = store.ensure_table(&other).await;
    assert!(
        matches!(&drifted, Err(Error::SchemaMismatch { differences, .. })
            if differences.iter().any(|d| d.contains("version"))),
        "{drifted:?}"
    );
    // Names a version attribute cannot have.
    for bad in ["", "_storekit_v", "a.b", "id"] {
        let built = TableSchema::builder("versioned", KeyDef::text("id"))
            .version_attribute(bad)
            .build();
        assert!(built.is_err(), "{bad:?}");
    }
}
