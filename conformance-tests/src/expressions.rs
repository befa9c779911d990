//! The tables store's expression language: conditions as query filters, answered by every
//! backend as the reference evaluator ([`Condition::matches`]) answers them.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::expr::bytes_fields;
use storekit_core::table::{
    Comparison, Condition, Document, KeyDef, KeyValue, Operand, Patch, Query, QueryPage, Record,
    RecordKey, Returning, Table, TableSchema, TableStore,
};

use crate::Fixture;
use crate::tables::doc;
use crate::tables::settled;

/// `exprs`: partition `p`, sort `n`; the query index `by-kind` on (`kind`, `n`); and `tag`, a
/// bytes key field (the index `by-tag`), so that bytes can be compared.
fn schema() -> TableSchema {
    TableSchema::builder("exprs", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("n")))
        .index("by-tag", KeyDef::bytes("tag"), None)
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

async fn ensure(f: &Fixture) -> (&dyn TableStore, TableSchema) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    (store, schema)
}

/// Every page of `query`, with the number of records of each page.
pub(crate) async fn all_pages(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: &Query,
) -> (Vec<Record>, Vec<usize>) {
    let (mut records, mut sizes) = (Vec::new(), Vec::new());
    let mut query = query.clone();
    loop {
        let page = store.query(schema, &query).await.expect("query");
        sizes.push(page.items.len());
        records.extend(page.items);
        match page.next {
            Some(next) => query = query.after(next),
            None => return (records, sizes),
        }
        assert!(sizes.len() < 1000, "the pages do not end");
    }
}

/// The `n` field of each record.
pub(crate) fn numbers(records: &[Record]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r.document["n"].as_i64().expect("n"))
        .collect()
}

/// A page whose matches sit behind many misses is whole and exact: over a partition of 1,200
/// records where only the last three match, filtered pages of 2 of the table and of an index,
/// in both orders, hold exactly the matches, and on backends with exact counts each page read
/// the records from its cursor through its last record (or the range's end), the pages 1,200
/// in all. SQL reads such a page in bounded chunks, each continuing where the one before
/// stopped, and what is left in one more read: this crosses every chunk.
pub async fn a_page_behind_many_misses_is_whole_and_exact(f: &Fixture) {
    const RECORDS: i64 = 1200;
    let (store, schema) = ensure(f).await;
    let documents: Vec<Document> = (0..RECORDS)
        .map(|n| doc(json!({"p": "far", "n": n, "kind": "far", "hit": n >= RECORDS - 3})))
        .collect();
    for batch in documents.chunks(storekit_core::table::MAX_BATCH) {
        store
            .put_many(&schema, batch.to_vec())
            .await
            .expect("put_many");
    }
    // Where index reads are eventual, wait until the index holds every record: 0 to 999 in
    // one page, 1,000 to 1,199 in another (a page holds at most 1,000).
    let first = Query::index("by-kind", "far").limit(1000);
    let through = |end: i64| move |page: &QueryPage| numbers(&page.items).last() == Some(&end);
    settled(store, &schema, &first, through(999)).await;
    let last = Query::index("by-kind", "far").descending().limit(200);
    settled(store, &schema, &last, through(1000)).await;
    let hit = Condition::eq("hit", true);
    for (name, query) in [
        ("table", Query::table("far")),
        ("index", Query::index("by-kind", "far")),
    ] {
        for descending in [false, true] {
            let mut query = query.clone().filter(hit.clone()).limit(2);
            if descending {
                query = query.descending();
            }
            let what = format!("{name}, descending: {descending}");
            let (mut pages, mut next) = (Vec::new(), Some(query.clone()));
            while let Some(query) = next.take() {
                let page = store.query(&schema, &query).await.expect("query");
                next = page.next.clone().map(|cursor| query.clone().after(cursor));
                pages.push(page);
                assert!(pages.len() <= 3, "{what}: the pages do not end");
            }
            let found: Vec<Vec<i64>> = pages.iter().map(|page| numbers(&page.items)).collect();
            let (reads, want): (Vec<u64>, Vec<Vec<i64>>) = if descending {
                (vec![2, 1198], vec![vec![1199, 1198], vec![1197]])
            } else {
                (vec![1199, 1], vec![vec![1197, 1198], vec![1199]])
            };
            assert_eq!(found, want, "{what}");
            let read: Vec<u64> = pages.iter().map(|page| page.read).collect();
            if f.capabilities.exact_read_counts {
                assert_eq!(read, reads, "{what}");
            } else {
                assert!(read.iter().sum::<u64>() >= 1200, "{what}: read {read:?}");
            }
        }
    }
}

/// Over a partition of 500 records where 1 in 50 matches, a filtered query's pages are full
/// at limits 1, 7 and 100 (only the last may be short), come in order, and hold exactly the
/// matches, in both orders and on a query index.
pub async fn filtered_pages_are_full_and_exact(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    for n in 0..500_i64 {
        let document = json!({"p": "big", "n": n, "kind": "k", "hit": n % 50 == 7, "pad": "x"});
        store.insert(&schema, doc(document)).await.expect("insert");
    }
    let expected: Vec<i64> = (0..500).filter(|n| n % 50 == 7).collect();
    // Where index reads are eventual, wait until the index holds every record.
    let all = Query::index("by-kind", "k").limit(1000);
    settled(store, &schema, &all, |page| page.items.len() == 500).await;
    let hit = Condition::eq("hit", true);
    for limit in [1, 7, 100] {
        for (name, query) in [
            ("table", Query::table("big")),
            ("index", Query::index("by-kind", "k")),
        ] {
            for descending in [false, true] {
                let mut query = query.clone().filter(hit.clone()).limit(limit);
                if descending {
                    query = query.descending();
                }
                let (records, sizes) = all_pages(store, &schema, &query).await;
                let mut want = expected.clone();
                if descending {
                    want.reverse();
                }
                assert_eq!(numbers(&records), want, "{name}, limit {limit}");
                let (last, full) = sizes.split_last().expect("a page");
                assert!(
                    full.iter().all(|&size| size == limit) && *last <= limit,
                    "{name}, limit {limit}: page sizes {sizes:?}"
                );
                assert!(
                    sizes.len() == want.len().div_ceil(limit)
                        || (sizes.len() == want.len() / limit + 1 && *last == 0),
                    "{name}, limit {limit}: {} pages for {} records",
                    sizes.len(),
                    want.len()
                );
            }
        }
    }
    // A filter nothing meets: one empty page, no cursor.
    let page = store
        .query(
            &schema,
            &Query::table("big").filter(Condition::eq("hit", "yes")),
        )
        .await
        .expect("query");
    assert!(page.items.is_empty() && page.next.is_none());
    // A cursor belongs to its filter.
    let first = store
        .query(&schema, &Query::table("big").filter(hit.clone()).limit(2))
        .await
        .expect("query");
    let cursor = first.next.expect("more pages");
    let other = store
        .query(
            &schema,
            &Query::table("big")
                .filter(Condition::eq("hit", false))
                .limit(2)
                .after(cursor),
        )
        .await;
    assert!(
        matches!(other, Err(Error::InvalidInput { what: "cursor", .. })),
        "{other:?}"
    );
}

/// Two records holding every type, and conditions of every operator on them, with the answers
/// DynamoDB's own server gives.
pub async fn every_operator_on_every_type(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let rich = json!({
        "p": "t", "n": 1, "num": 5, "s": "héllo", "e": "a😀", "l": [1, "a"], "m": {"k": 1, "in": {"deep": [true, null]}},
        "b": true, "z": null, "big": 9_007_199_254_740_993_u64, "f": 2.5,
        "tag": STANDARD.encode([0u8, 1, 2]),
    });
    let plain = json!({"p": "t", "n": 2, "num": "5", "s": "world", "l": [], "m": {}, "b": false});
    store.insert(&schema, doc(rich)).await.expect("insert");
    store.insert(&schema, doc(plain)).await.expect("insert");
    let cases: Vec<(Condition, &[i64])> = vec![
        (Condition::eq("num", 5), &[1]),
        (Condition::eq("num", 5.0), &[1]),
        (Condition::eq("num", "5"), &[2]),
        (Condition::ne("num", 5), &[2]),
        (Condition::ne("missing", 1), &[1, 2]),
        (Condition::lt("num", 6), &[1]),
        (Condition::lt("num", "6"), &[2]),
        (Condition::ge("f", 2.5), &[1]),
        (Condition::gt("big", 9_007_199_254_740_992_u64), &[1]),
        (Condition::le("big", 9_007_199_254_740_992.0), &[]),
        (Condition::gt("s", "h"), &[1, 2]),
        (Condition::gt("s", "i"), &[2]),
        (Condition::gt("e", "a\u{ffff}"), &[1]),
        (Condition::between("num", 1, 5), &[1]),
        (Condition::between("s", "a", "i"), &[1]),
        (Condition::begins_with("s", "hé"), &[1]),
        (Condition::contains("s", "ll"), &[1]),
        (Condition::contains("l", 1), &[1]),
        (Condition::contains("l", "a"), &[1]),
        (Condition::contains("num", 5), &[]),
        (Condition::exists("z"), &[1]),
        (Condition::not_exists("z"), &[2]),
        (Condition::eq("z", Value::Null), &[1]),
        (Condition::ne("z", Value::Null), &[2]),
        (Condition::eq("b", false), &[2]),
        (Condition::eq("l", json!([1, "a"])), &[1]),
        (Condition::eq("l", json!([])), &[2]),
        (Condition::eq("m", json!({})), &[2]),
        (Condition::eq("m.k", 1), &[1]),
        (Condition::eq("m.in.deep[0]", true), &[1]),
        (Condition::exists("m.in.deep[1]"), &[1]),
        (Condition::not_exists("m.in.deep[2]"), &[1, 2]),
        (Condition::eq("l[1]", "a"), &[1]),
        (Condition::ne("s.k", 1), &[1, 2]),
        (
            Condition::is_in("num", [Operand::from("5"), Operand::from(5)]),
            &[1, 2],
        ),
        (Condition::is_in("s", ["world", "x"]), &[2]),
        (Condition::size("s", Comparison::Eq, 5), &[1, 2]),
        (Condition::size("e", Comparison::Eq, 3), &[1]),
        (Condition::size("l", Comparison::Gt, 0), &[1]),
        (Condition::size("m", Comparison::Eq, 0), &[2]),
        (Condition::size("num", Comparison::Ge, 0), &[2]),
        (Condition::size("f", Comparison::Ge, 0), &[]),
        (Condition::size("tag", Comparison::Eq, 3), &[1]),
        (Condition::eq("tag", Operand::bytes([0, 1, 2])), &[1]),
        (Condition::lt("tag", Operand::bytes([0, 1, 3])), &[1]),
        (Condition::begins_with("tag", Operand::bytes([0])), &[1]),
        (Condition::contains("tag", Operand::bytes([1, 2])), &[1]),
        (Condition::not(Condition::eq("num", 5)), &[2]),
        (
            Condition::eq("b", true).or(Condition::eq("s", "world")),
            &[1, 2],
        ),
        (
            Condition::eq("b", true).and(Condition::eq("s", "world")),
            &[],
        ),
        (
            Condition::not(Condition::exists("z").and(Condition::gt("num", 1))),
            &[2],
        ),
    ];
    let bytes = bytes_fields(&schema);
    let stored = store
        .query(&schema, &Query::table("t"))
        .await
        .expect("query")
        .items;
    for (condition, expected) in cases {
        let page = store
            .query(&schema, &Query::table("t").filter(condition.clone()))
            .await
            .unwrap_or_else(|e| panic!("{condition:?}: {e}"));
        assert_eq!(numbers(&page.items), expected, "{condition:?}");
        // The reference agrees with the same answers.
        let reference: Vec<i64> = stored
            .iter()
            .filter(|r| condition.matches(&r.document, &bytes))
            .map(|r| r.document["n"].as_i64().expect("n"))
            .collect();
        assert_eq!(reference, expected, "reference: {condition:?}");
    }
}

/// A condition that no backend could answer the same way is refused before anything runs.
pub async fn bad_conditions_are_invalid_input(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    for bad in [
        Condition::lt("l", json!([1])),
        Condition::gt("b", true),
        Condition::between("n", 9, 1),
        Condition::begins_with("n", 5),
        Condition::contains("l", json!({"a": 1})),
        Condition::is_in("n", Vec::<Operand>::new()),
        Condition::eq("tag", "AAEC"),
        Condition::eq("s", Operand::bytes([1])),
        Condition::eq("a..b", 1),
        Condition::eq("a[x]", 1),
        Condition::eq("_storekit_version", 1),
        Condition::eq("n", 1e200),
        Condition::And(Vec::new()),
        Condition::gt("n", 1),
        Condition::eq("p", "t"),
    ] {
        let result = store
            .query(&schema, &Query::table("t").filter(bad.clone()))
            .await;
        assert!(
            matches!(
                result,
                Err(Error::InvalidInput {
                    what: "condition",
                    ..
                })
            ),
            "{bad:?}: {result:?}"
        );
    }
}

/// Random conditions over random documents: every backend returns, page after page, exactly
/// the records the reference evaluator picks. A divergence shrinks to a small condition and
/// prints the seed (`STOREKIT_EXPR_SEED` replays it).
pub async fn random_filters_agree_with_the_reference(f: &Fixture) {
    let seed: u64 = std::env::var("STOREKIT_EXPR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| getrandom::u64().unwrap_or(11));
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let (store, schema) = ensure(f).await;
    // The documents, drawn once from the seed.
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut documents = Vec::new();
    let mut draw = TestRunner::new_with_rng(Config::default(), rng.clone());
    for n in 0..40_i64 {
        let mut document = random_document()
            .new_tree(&mut draw)
            .map(|tree| proptest::strategy::ValueTree::current(&tree))
            .unwrap_or_default();
        document.insert("p".into(), json!("r"));
        document.insert("n".into(), json!(n));
        let record = store
            .insert(&schema, document)
            .await
            .unwrap_or_else(|e| panic!("STOREKIT_EXPR_SEED={seed}: insert: {e}"));
        documents.push(record.document);
    }
    let bytes: Vec<String> = bytes_fields(&schema)
        .into_iter()
        .map(String::from)
        .collect();
    let config = Config {
        cases: 96,
        failure_persistence: None,
        max_shrink_iters: 300,
        ..Config::default()
    };
    rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let runtime = tokio::runtime::Handle::current();
    let ran = AtomicUsize::new(0);
    let valid = random_condition().prop_filter("a condition every backend takes", |c| {
        c.check(&schema).is_ok()
    });
    let outcome = tokio::task::block_in_place(|| {
        runner
            .run(&(valid, 1..=45_usize), |(condition, limit)| {
                ran.fetch_add(1, Ordering::Relaxed);
                let by_ref: Vec<&str> = bytes.iter().map(String::as_str).collect();
                let expected: Vec<i64> = documents
                    .iter()
                    .filter(|d| condition.matches(d, &by_ref))
                    .map(|d| d["n"].as_i64().unwrap_or(-1))
                    .collect();
                let query = Query::table("r").filter(condition).limit(limit);
                let (records, _) = runtime.block_on(all_pages(store, &schema, &query));
                let got = numbers(&records);
                if got == expected {
                    Ok(())
                } else {
                    Err(TestCaseError::fail(format!(
                        "limit {limit}: the store returned {got:?}, the reference {expected:?}"
                    )))
                }
            })
            .map_err(|failure| failure.to_string())
    });
    if let Err(failure) = outcome {
        panic!("STOREKIT_EXPR_SEED={seed}: {failure}");
    }
    assert!(ran.load(Ordering::Relaxed) >= 96);
}

/// Every patch action, its returns, and the patches a record cannot take, which change
/// nothing; index keys and unique values follow the patched record.
pub async fn patches_apply_every_action_or_none(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let key = RecordKey::with_sort("pa", 1);
    let first = json!({"p": "pa", "n": 1, "kind": "old", "sku": "S1", "count": 1, "s": "x",
        "l": [1], "m": {"k": 1}, "gone": true});
    store.insert(&schema, doc(first)).await.expect("insert");
    store
        .insert(&schema, doc(json!({"p": "pa", "n": 2, "sku": "S2"})))
        .await
        .expect("insert");
    let patch = Patch::new()
        .set("status", "shipped")
        .set("m.j", 2)
        .add("count", 2)
        .add("fresh", 5)
        .append("l", [json!("a")])
        .append("new_list", [1, 2])
        .set_if_absent("s", "kept?")
        .set_if_absent("absent", "set")
        .set("l2", json!([0]))
        .remove("gone")
        .set("kind", "new");
    let patched = store
        .patch(&schema, &key, &patch, None, Returning::New)
        .await
        .expect("patch");
    assert_eq!(patched.version, 2);
    let expected = json!({"p": "pa", "n": 1, "kind": "new", "sku": "S1", "count": 3, "s": "x",
        "l": [1, "a"], "m": {"k": 1, "j": 2}, "status": "shipped", "fresh": 5,
        "new_list": [1, 2], "absent": "set", "l2": [0]});
    assert_eq!(
        Value::Object(patched.document.clone().expect("new")),
        expected
    );
    let stored = store.get(&schema, &key).await.expect("get").expect("found");
    assert_eq!(
        (stored.version, Value::Object(stored.document)),
        (2, expected)
    );
    // The record moved in the index it is keyed in.
    let by_kind = settled(store, &schema, &Query::index("by-kind", "new"), |page| {
        !page.items.is_empty()
    })
    .await;
    assert_eq!(numbers(&by_kind.items), [1]);
    // What each `Returning` gives.
    let old = store
        .patch(
            &schema,
            &key,
            &Patch::new().add("count", 1),
            None,
            Returning::Old,
        )
        .await
        .expect("patch");
    assert_eq!(old.version, 3);
    assert_eq!(old.document.expect("old")["count"], json!(3));
    let updated = store
        .patch(
            &schema,
            &key,
            &Patch::new().add("count", 1).set("m.k", 9),
            None,
            Returning::UpdatedNew,
        )
        .await
        .expect("patch");
    assert_eq!(
        Value::Object(updated.document.expect("updated")),
        json!({"count": 5, "m": {"k": 9, "j": 2}})
    );
    let none = store
        .patch(
            &schema,
            &key,
            &Patch::new().set("s", "y"),
            None,
            Returning::None,
        )
        .await
        .expect("patch");
    assert_eq!((none.version, none.document), (5, None));
    // Patches this record cannot take: refused, and the record is as it was.
    for refused in [
        Patch::new().set("nope.x", 1),
        Patch::new().add("s", 1),
        Patch::new().append("s", [1]),
        Patch::new().set("l.x", 1),
        Patch::new().set("m[0]", 1),
        Patch::new().set("count", 1).set("m.k.deep", 1),
    ] {
        let result = store
            .patch(&schema, &key, &refused, None, Returning::New)
            .await;
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{refused:?}: {result:?}"
        );
    }
    for refused in [
        Patch::new().set("p", "elsewhere"),
        Patch::new().set("kind", 5),
        Patch::new().set("a..b", 1),
        Patch::new(),
        Patch::new().set("m", 1).set("m.k", 2),
    ] {
        let result = store
            .patch(&schema, &key, &refused, None, Returning::New)
            .await;
        assert!(
            matches!(result, Err(Error::InvalidInput { what: "patch", .. })),
            "{refused:?}: {result:?}"
        );
    }
    let after = store.get(&schema, &key).await.expect("get").expect("found");
    assert_eq!(after.version, 5, "nothing refused was written");
    assert_eq!(after.document["count"], json!(5));
    // A unique value moves with a patch, and a taken one is refused.
    let taken = store
        .patch(
            &schema,
            &key,
            &Patch::new().set("sku", "S2"),
            None,
            Returning::New,
        )
        .await;
    assert!(
        matches!(taken, Err(Error::AlreadyExists { .. })),
        "{taken:?}"
    );
    store
        .patch(
            &schema,
            &key,
            &Patch::new().set("sku", "S3"),
            None,
            Returning::None,
        )
        .await
        .expect("a free value");
    let holder = store
        .get_by_unique(&schema, "sku", &[KeyValue::from("S3")])
        .await
        .expect("get_by_unique")
        .expect("found");
    assert_eq!(holder.key, key);
    assert!(
        store
            .get_by_unique(&schema, "sku", &[KeyValue::from("S1")])
            .await
            .expect("get_by_unique")
            .is_none()
    );
    // No such record.
    let missing = store
        .patch(
            &schema,
            &RecordKey::with_sort("pa", 99),
            &Patch::new().set("s", "x"),
            None,
            Returning::New,
        )
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { what: "record" })),
        "{missing:?}"
    );
    assert!(
        store
            .get(&schema, &RecordKey::with_sort("pa", 99))
            .await
            .expect("get")
            .is_none(),
        "a patch never creates a record"
    );
}

/// A patch's condition is checked on the record as it is, in the same request: when it does
/// not hold, the patch is a `Conflict` on `"condition"` and nothing changes.
pub async fn conditional_patches_change_nothing_when_refused(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let key = RecordKey::with_sort("pc", 1);
    store
        .insert(&schema, doc(json!({"p": "pc", "n": 1, "stock": 2})))
        .await
        .expect("insert");
    let take = Patch::new().add("stock", -1);
    let enough = Condition::ge("stock", 1);
    for expected in [1, 0] {
        let done = store
            .patch(&schema, &key, &take, Some(&enough), Returning::New)
            .await
            .expect("stock left");
        assert_eq!(done.document.expect("new")["stock"], json!(expected));
    }
    let refused = store
        .patch(&schema, &key, &take, Some(&enough), Returning::New)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Conflict {
                what: "condition",
                actual: 3,
                ..
            })
        ),
        "{refused:?}"
    );
    let after = store.get(&schema, &key).await.expect("get").expect("found");
    assert_eq!(
        (after.version, after.document["stock"].clone()),
        (3, json!(0))
    );
    let bad = store
        .patch(
            &schema,
            &key,
            &take,
            Some(&Condition::lt("stock", json!([1]))),
            Returning::New,
        )
        .await;
    assert!(
        matches!(
            bad,
            Err(Error::InvalidInput {
                what: "condition",
                ..
            })
        ),
        "{bad:?}"
    );
}

/// 32 tasks add 1 a hundred times each to one counter: it ends at exactly 3,200 and its
/// version at 3,201, on every backend.
pub async fn concurrent_adds_to_one_counter_are_exact(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    let key = RecordKey::with_sort("counter", 1);
    store
        .insert(&schema, doc(json!({"p": "counter", "n": 1})))
        .await
        .expect("insert");
    let tasks = (0..32).map(|_| {
        let (store, schema, key) = (f.tables().clone(), schema.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                store
                    .patch(
                        &schema,
                        &key,
                        &Patch::new().add("views", 1),
                        None,
                        Returning::None,
                    )
                    .await
                    .expect("add");
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    let counter = store.get(&schema, &key).await.expect("get").expect("found");
    assert_eq!(counter.document["views"], json!(3200));
    assert_eq!(counter.version, 3201);
}

/// `counters`: the key and query index of `exprs`, without its unique index (nor expiry, nor
/// computed keys): the shape whose patches PostgreSQL makes in one `UPDATE … RETURNING`, where
/// `exprs`' take the locked read-and-write.
fn counters_schema() -> TableSchema {
    TableSchema::builder("counters", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("n")))
        .build()
        .expect("valid schema")
}

/// 32 tasks add 1 a hundred times each to one counter of a table without a unique index,
/// each asking for the updated value: the counter ends at exactly 3,200 and its version at
/// 3,201, and the answers are 1 to 3,200 and versions 2 to 3,201, each exactly once (no
/// add was lost, applied twice, or answered with another's result).
pub async fn concurrent_adds_without_a_unique_index_are_exact(f: &Fixture) {
    let schema = counters_schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let key = RecordKey::with_sort("counter", 1);
    store
        .insert(&schema, doc(json!({"p": "counter", "n": 1, "kind": "c"})))
        .await
        .expect("insert");
    let tasks = (0..32).map(|_| {
        let (store, schema, key) = (f.tables().clone(), schema.clone(), key.clone());
        tokio::spawn(async move {
            let mut seen = Vec::with_capacity(100);
            for _ in 0..100 {
                let done = store
                    .patch(
                        &schema,
                        &key,
                        &Patch::new().add("views", 1),
                        None,
                        Returning::UpdatedNew,
                    )
                    .await
                    .expect("add");
                let views = done.document.expect("updated")["views"]
                    .as_u64()
                    .expect("views");
                seen.push((views, done.version));
            }
            seen
        })
    });
    let mut answers = Vec::new();
    for task in futures::future::join_all(tasks).await {
        answers.extend(task.expect("task"));
    }
    answers.sort_unstable();
    let expected: Vec<(u64, u64)> = (1..=3200).map(|views| (views, views + 1)).collect();
    assert!(answers == expected, "adds answered out of step");
    let counter = store.get(&schema, &key).await.expect("get").expect("found");
    assert_eq!(counter.document["views"], json!(3200));
    assert_eq!(counter.version, 3201);
    assert_eq!(
        counter.document["kind"],
        json!("c"),
        "the rest is untouched"
    );
}

/// A record of the typed patch case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    p: String,
    n: i64,
    kind: String,
    status: String,
    views: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// What a status change touches, read from `Returning::UpdatedNew`.
#[derive(Debug, PartialEq, Deserialize)]
struct StatusChange {
    status: String,
    views: i64,
    note: Option<String>,
}

/// `Table::patch_returning` reads what `Returning` asks for as a second type: the touched
/// fields as they are after (`UpdatedNew`, a removed one absent), the whole record after
/// (`New`) or before (`Old`), nothing (`None`); with the version after the patch, on a table
/// with a unique index and on one without; a refused condition changes nothing, and an
/// answer that does not read as the type asked for is `InvalidInput`.
pub async fn typed_patches_return_what_is_asked_as_a_second_type(f: &Fixture) {
    for schema in [schema(), counters_schema()] {
        f.tables()
            .ensure_table(&schema)
            .await
            .expect("ensure_table");
        let table: Table<Order> = Table::new(f.tables().clone(), schema.clone());
        let key = RecordKey::with_sort("typed", 1);
        let placed = Order {
            p: "typed".into(),
            n: 1,
            kind: "k".into(),
            status: "new".into(),
            views: 0,
            note: Some("fragile".into()),
        };
        table.insert(&placed).await.expect("insert");
        let name = schema.name();

        let ship = Patch::new()
            .set("status", "shipped")
            .add("views", 2)
            .remove("note");
        let shipped = table
            .patch_returning::<StatusChange>(key.clone(), ship, None, Returning::UpdatedNew)
            .await
            .expect("UpdatedNew");
        assert_eq!(shipped.version, 2, "{name}");
        assert_eq!(
            shipped.record,
            Some(StatusChange {
                status: "shipped".into(),
                views: 2,
                note: None,
            }),
            "{name}"
        );

        let viewed = table
            .patch_returning::<Order>(
                key.clone(),
                Patch::new().add("views", 1),
                None,
                Returning::New,
            )
            .await
            .expect("New");
        let after_view = Order {
            status: "shipped".into(),
            views: 3,
            note: None,
            ..placed.clone()
        };
        assert_eq!(
            (viewed.version, viewed.record),
            (3, Some(after_view.clone())),
            "{name}"
        );

        let delivered = table
            .patch_returning::<Order>(
                key.clone(),
                Patch::new().set("status", "delivered"),
                Condition::eq("status", "shipped"),
                Returning::Old,
            )
            .await
            .expect("Old");
        assert_eq!(
            (delivered.version, delivered.record),
            (4, Some(after_view)),
            "{name}"
        );

        let refused = table
            .patch_returning::<StatusChange>(
                key.clone(),
                Patch::new().set("status", "lost").add("views", 1),
                Condition::eq("status", "shipped"),
                Returning::UpdatedNew,
            )
            .await;
        assert!(
            matches!(
                refused,
                Err(Error::Conflict {
                    what: "condition",
                    actual: 4,
                    ..
                })
            ),
            "{name}: {refused:?}"
        );

        let quiet = table
            .patch_returning::<StatusChange>(
                key.clone(),
                Patch::new().add("views", 1),
                None,
                Returning::None,
            )
            .await
            .expect("None");
        assert_eq!((quiet.version, quiet.record), (5, None), "{name}");

        // `UpdatedNew` holds only `views`: not an `Order`. The patch is made all the same.
        let partial = table
            .patch_returning::<Order>(
                key.clone(),
                Patch::new().add("views", 1),
                None,
                Returning::UpdatedNew,
            )
            .await;
        assert!(
            matches!(partial, Err(Error::InvalidInput { what: "record", .. })),
            "{name}: {partial:?}"
        );

        let now = table.get(key.clone()).await.expect("get").expect("found");
        let expected = Order {
            status: "delivered".into(),
            views: 5,
            note: None,
            ..placed
        };
        assert_eq!((now.version, now.record), (6, expected), "{name}");
        // `Table::patch` is `Returning::New` read as the table's own type.
        let patched = table
            .patch(key, Patch::new().set("status", "returned"))
            .await
            .expect("patch");
        assert_eq!(
            (patched.version, patched.record.status.as_str()),
            (7, "returned")
        );
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3_i64..4).prop_map(Value::from),
        prop::sample::select(vec![
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(9_007_199_254_740_993_u64),
            json!(0.5),
            json!(-2.25),
            json!(1e20),
            json!(1.5e-7),
        ]),
        prop::sample::select(vec!["", "a", "ab", "b", "B", "é", "a😀", "zz", "a\u{ffff}"])
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn random_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::from),
        1 => prop::collection::btree_map(prop::sample::select(vec!["x", "y"]), scalar(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ]
}

fn random_document() -> impl Strategy<Value = Document> {
    (
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "l", "m"]),
            random_value(),
            0..4,
        ),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..4)),
    )
        .prop_map(|(fields, tag)| {
            let mut document: Document =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(tag) = tag {
                document.insert("tag".into(), Value::from(STANDARD.encode(tag)));
            }
            document
        })
}

fn random_path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "l", "m", "l[0]", "l[1]", "m.x", "m.y", "a[0]", "a.x", "nope",
    ])
}

fn random_operand() -> impl Strategy<Value = Operand> {
    random_value().prop_map(Operand::Json)
}

fn comparison() -> impl Strategy<Value = Comparison> {
    prop::sample::select(vec![
        Comparison::Eq,
        Comparison::Ne,
        Comparison::Lt,
        Comparison::Le,
        Comparison::Gt,
        Comparison::Ge,
    ])
}

fn leaf() -> impl Strategy<Value = Condition> {
    let bytes = prop::collection::vec(any::<u8>(), 0..3).prop_map(Operand::Bytes);
    prop_oneof![
        (random_path(), comparison(), random_operand()).prop_map(|(p, op, v)| Condition::Compare {
            path: p.into(),
            op,
            value: v
        }),
        (comparison(), bytes.clone()).prop_map(|(op, v)| Condition::Compare {
            path: "tag".into(),
            op,
            value: v
        }),
        (random_path(), scalar(), scalar())
            .prop_map(|(p, low, high)| Condition::between(p, low, high)),
        (random_path(), scalar()).prop_map(|(p, v)| Condition::begins_with(p, v)),
        bytes.clone().prop_map(|v| Condition::begins_with("tag", v)),
        (random_path(), scalar()).prop_map(|(p, v)| Condition::contains(p, v)),
        bytes.prop_map(|v| Condition::contains("tag", v)),
        random_path().prop_map(Condition::exists),
        random_path().prop_map(Condition::not_exists),
        (random_path(), prop::collection::vec(random_operand(), 1..4))
            .prop_map(|(p, values)| Condition::is_in(p, values)),
        (
            prop::sample::select(vec!["a", "b", "l", "m", "tag", "nope"]),
            comparison(),
            0_u64..4
        )
            .prop_map(|(p, op, size)| Condition::size(p, op, size)),
    ]
}

pub(crate) fn random_condition() -> impl Strategy<Value = Condition> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(Condition::And),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Condition::Or),
            inner.prop_map(Condition::not),
        ]
    })
}
