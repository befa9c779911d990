//! The tables store at its edges, where a hostile or unlucky caller goes: float keys past
//! 2^53, pages that must always move forward, edited cursors, the last version, and huge field
//! names. Each case is one rule of `storekit_core::table`, the same on every backend; the
//! property test at the end drives cursors with random queries, pages and edits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt as _, TryStreamExt as _};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use storekit_core::table::{
    Consistency, KeyDef, KeyValue, MAX_FIELD_NAME_BYTES, MAX_PAGE, MAX_VERSION, Order, Query,
    Record, RecordKey, Scan, SortCondition, TableSchema, TableStore, query_stream,
};
use storekit_core::{Error, MemoryStore};

use crate::Fixture;
use crate::tables::{doc, ensure, get};

/// Random queries per backend in the property test.
pub const CURSOR_CASES: u32 = 64;

fn refused(result: &Result<impl std::fmt::Debug, Error>, what: &str) -> bool {
    matches!(result, Err(Error::InvalidInput { what: w, .. }) if *w == what)
}

/// 2^53 + 1, the first integer an `f64` cannot hold.
const PAST_2_53: i64 = (1 << 53) + 1;

/// `floatkeys`: partition `p` (text), sort `x` (float), an index on `t` (float) alone.
fn float_keys() -> TableSchema {
    TableSchema::builder("floatkeys", KeyDef::text("p"))
        .sort_key(KeyDef::float("x"))
        .index("by-t", KeyDef::float("t"), None)
        .build()
        .expect("valid schema")
}

/// A float key field holding a JSON integer that no `f64` holds exactly is refused, naming the
/// field, in a key and in an index key alike; integers an `f64` holds (2^60, -2^63) are kept
/// and found again by the key they come back with.
pub async fn float_keys_hold_only_integers_a_float_holds_exactly(f: &Fixture) {
    let schema = float_keys();
    let store = ensure(f, &schema).await;
    let inexact = [
        json!(PAST_2_53),
        json!(i64::MAX),
        json!(i64::MIN + 1),
        json!(u64::MAX),
        // A timestamp in nanoseconds.
        json!(1_733_500_000_123_456_789_i64),
    ];
    for x in &inexact {
        for (value, field) in [
            (json!({"p": "f", "x": x}), "\"x\""),
            (json!({"p": "f", "x": 1.5, "t": x}), "\"t\""),
        ] {
            for put in [false, true] {
                let result = if put {
                    store.put(&schema, doc(value.clone())).await
                } else {
                    store.insert(&schema, doc(value.clone())).await
                };
                assert_matches!(
                    &result,
                    Err(Error::InvalidInput { what: "document", why }) if why.contains(field),
                    "{value}"
                );
            }
        }
    }
    assert_eq!(store.count(&schema).await.expect("count"), 0);

    for x in [1_i64 << 60, i64::MIN, (1 << 53) + 2] {
        let record = store
            .insert(&schema, doc(json!({"p": "f", "x": x, "t": x})))
            .await
            .expect("an integer a float holds");
        let key = RecordKey::with_sort("f", x as f64);
        assert_eq!(record.key, key);
        let read = get(store, &schema, &key).await;
        assert_eq!(read.map(|r| r.key), Some(key.clone()));
        // The same value written as a float is the same key, and it is taken.
        let taken = store
            .insert(&schema, doc(json!({"p": "f", "x": x as f64})))
            .await;
        assert_matches!(taken, Err(Error::AlreadyExists { what: "record" }));
        assert!(store.delete(&schema, &key, None).await.expect("delete"));
    }
    assert_eq!(store.count(&schema).await.expect("count"), 0);
}

/// Every page moves past the one before it: paging one record at a time through float keys
/// around 2^53 (where an inexact key made DynamoDB return the same record on every page) and
/// through ties on an index's sort key ends, with each record once, in both orders.
pub async fn paging_one_record_at_a_time_always_ends(f: &Fixture) {
    let schema = TableSchema::builder("floatpages", KeyDef::text("p"))
        .sort_key(KeyDef::float("x"))
        .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
        .build()
        .expect("valid schema");
    let store = ensure(f, &schema).await;
    let exact: [i64; 5] = [
        (1 << 53) - 1,
        1 << 53,
        (1 << 53) + 2,
        (1 << 54) + 4,
        1 << 60,
    ];
    for (i, x) in exact.iter().enumerate() {
        store
            .insert(
                &schema,
                doc(json!({"p": "f", "x": x, "g": "g", "n": i / 2})),
            )
            .await
            .expect("insert");
    }
    // Refused (asserted at the end); a record stored under it could never be passed by a
    // cursor, so every page from then on would be the same one.
    let inexact = store
        .insert(&schema, doc(json!({"p": "f", "x": PAST_2_53})))
        .await;

    let tables: Arc<dyn TableStore> = f.tables().clone();
    for order in [Order::Ascending, Order::Descending] {
        let all = collect(
            &tables,
            &schema,
            Query::table("f").order(order).limit(1),
            exact.len(),
        )
        .await;
        let mut expected: Vec<f64> = exact.iter().map(|&x| x as f64).collect();
        if order == Order::Descending {
            expected.reverse();
        }
        let got: Vec<f64> = all
            .iter()
            .map(|r| match &r.key.sort {
                Some(KeyValue::Float(x)) => *x,
                other => panic!("a float sort key, not {other:?}"),
            })
            .collect();
        assert_eq!(got, expected, "{order:?}");
    }
    // Ties on the index's sort key (n = 0, 0, 1, 1, 2), one record per page.
    let index = Query::index("by-g", "g").limit(1);
    wait_for_index(store, &schema, &index, exact.len()).await;
    for order in [Order::Ascending, Order::Descending] {
        let all = collect(&tables, &schema, index.clone().order(order), exact.len()).await;
        let keys: BTreeSet<RecordKey> = all.iter().map(|r| r.key.clone()).collect();
        assert_eq!((all.len(), keys.len()), (exact.len(), exact.len()));
        let ns: Vec<i64> = all
            .iter()
            .map(|r| r.document["n"].as_i64().expect("n"))
            .collect();
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        if order == Order::Descending {
            sorted.reverse();
        }
        assert_eq!(ns, sorted, "{order:?}");
    }
    assert!(refused(&inexact, "document"), "{inexact:?}");
}

/// Every record of `query` through `query_stream`, failing if it yields more than `expected`
/// records (a page loop) or takes over a minute.
async fn collect(
    store: &Arc<dyn TableStore>,
    schema: &TableSchema,
    query: Query,
    expected: usize,
) -> Vec<Record> {
    let stream = query_stream(store.clone(), schema.clone(), query.clone())
        .take(expected + 1)
        .try_collect::<Vec<_>>();
    let all = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .unwrap_or_else(|_| panic!("{query:?} never ended"))
        .expect("query_stream");
    assert!(all.len() <= expected, "{query:?} repeats records: {all:?}");
    all
}

/// Waits until an index query sees `count` records, where index reads are eventual.
async fn wait_for_index(store: &dyn TableStore, schema: &TableSchema, query: &Query, count: usize) {
    if store.index_consistency() != Consistency::Eventual {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let query = query.clone().limit(MAX_PAGE);
    while store
        .query(schema, &query)
        .await
        .expect("query")
        .items
        .len()
        < count
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cursors`: partition `p` (text), sort `s` (integer); an index on `g` (text) sorted by `n`
/// (integer, with ties).
fn cursors() -> TableSchema {
    TableSchema::builder("cursors", KeyDef::text("p"))
        .sort_key(KeyDef::int("s"))
        .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
        .build()
        .expect("valid schema")
}

/// `text` decoded from a cursor's base64, with `from` replaced by `to` (of any format that
/// spells the position in JSON, as storekit's does), encoded again: the position edited, the
/// rest of the cursor (its fingerprint or tag) kept.
fn reencoded(cursor: &str, from: &str, to: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let at = bytes
        .windows(from.len())
        .position(|window| window == from.as_bytes())?;
    let mut edited = bytes[..at].to_vec();
    edited.extend_from_slice(to.as_bytes());
    edited.extend_from_slice(&bytes[at + from.len()..]);
    Some(URL_SAFE_NO_PAD.encode(edited))
}

/// A cursor is bound to its query and tamper-evident: its position moved to another
/// partition or another record, or any one character of it changed, is
/// `InvalidInput { what: "cursor" }` on every backend, never another partition's records or a
/// raw error; the cursor as returned still continues.
pub async fn edited_cursors_are_invalid_input(f: &Fixture) {
    let schema = cursors();
    let store = ensure(f, &schema).await;
    for s in 0..6 {
        for p in ["pa", "pb"] {
            let g = if p == "pa" { "ga" } else { "gb" };
            store
                .insert(&schema, doc(json!({"p": p, "s": s, "g": g, "n": s})))
                .await
                .expect("insert");
        }
    }
    let table = Query::table("pa").limit(2);
    let index = Query::index("by-g", "ga").limit(2);
    wait_for_index(store, &schema, &index, 6).await;
    for query in [table, index] {
        let page = store.query(&schema, &query).await.expect("query");
        let cursor = page.next.expect("more pages");
        // Moved to the other partition: the same query on `pa` would list `pb`'s records.
        for (from, to) in [
            ("\"v\":\"pa\"", "\"v\":\"pb\""),
            ("\"v\":1", "\"v\":3"),
            ("\"v\":1", "\"v\":9"),
        ] {
            let edited = reencoded(&cursor, from, to).expect("a JSON position");
            let result = store.query(&schema, &query.clone().after(edited)).await;
            assert!(
                refused(&result, "cursor"),
                "{from} -> {to} in {query:?}: {result:?}"
            );
        }
        for edited in single_character_edits(&cursor) {
            let result = store
                .query(&schema, &query.clone().after(edited.as_str()))
                .await;
            assert!(refused(&result, "cursor"), "{edited}: {result:?}");
        }
        let next = store
            .query(&schema, &query.clone().after(cursor))
            .await
            .expect("the cursor as returned continues");
        assert_eq!(next.items.len(), 2);
    }
    // A scan's cursor moved to another record.
    let page = store
        .scan(&schema, &Scan::new().limit(3))
        .await
        .expect("scan");
    let cursor = page.next.expect("more");
    let last = &page.items[2].key;
    let (Some(KeyValue::Int(s)), KeyValue::Text(p)) = (&last.sort, &last.partition) else {
        panic!("a text and int key: {last:?}");
    };
    let other = if p == "pa" { "pb" } else { "pa" };
    let edited = reencoded(
        &cursor,
        &format!("\"v\":\"{p}\""),
        &format!("\"v\":\"{other}\""),
    )
    .expect("a JSON position");
    let result = store
        .scan(&schema, &Scan::new().limit(3).after(edited.as_str()))
        .await;
    assert!(refused(&result, "cursor"), "{result:?}");
    let edited = reencoded(
        &cursor,
        &format!("\"v\":{s}"),
        &format!("\"v\":{}", (s + 1) % 6),
    );
    let result = store
        .scan(&schema, &crate::tables::scan_page(3, edited.as_deref()))
        .await;
    assert!(refused(&result, "cursor"), "{result:?}");
}

/// One edit per character of `cursor`: the character replaced by another of the alphabet.
fn single_character_edits(cursor: &str) -> Vec<String> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    cursor
        .bytes()
        .enumerate()
        .map(|(i, c)| {
            let mut edited = cursor.as_bytes().to_vec();
            let at = alphabet.iter().position(|&a| a == c).unwrap_or(0);
            edited[i] = alphabet[(at + 1 + i % 63) % alphabet.len()];
            String::from_utf8(edited).expect("ASCII")
        })
        .collect()
}

/// `versions`: a text id and a unique sku.
fn versioned() -> TableSchema {
    TableSchema::builder("versions", KeyDef::text("id"))
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

fn record_at(id: &str, sku: &str, version: u64) -> Record {
    Record {
        key: RecordKey::new(id),
        version,
        document: doc(json!({"id": id, "sku": sku})),
    }
}

/// Versions run from 1 to `i64::MAX`: an import outside is refused; a record at the last
/// version can be read and deleted, and every write over it is `InvalidInput { what:
/// "version" }` that writes nothing (no wrap to 0, no raw overflow).
pub async fn versions_run_from_one_to_i64_max(f: &Fixture) {
    let schema = versioned();
    let store = ensure(f, &schema).await;
    let transfer = f.transfer();
    for version in [0, MAX_VERSION + 1, u64::MAX] {
        let result = transfer
            .import_records(&schema, &[record_at("out", "S0", version)])
            .await;
        assert!(refused(&result, "version"), "{version}: {result:?}");
    }
    assert_eq!(store.count(&schema).await.expect("count"), 0);

    // One below the end: one more write reaches it, and that is the last.
    transfer
        .import_records(&schema, &[record_at("last", "S1", MAX_VERSION - 1)])
        .await
        .expect("import");
    let put = store
        .put(&schema, doc(json!({"id": "last", "sku": "S1"})))
        .await
        .expect("put");
    assert_eq!(put.version, MAX_VERSION);
    let stored = get(store, &schema, &"last".into()).await.expect("stored");
    assert_eq!(stored.version, MAX_VERSION);

    let moved = doc(json!({"id": "last", "sku": "S2", "note": "never written"}));
    let put = store.put(&schema, moved.clone()).await;
    assert!(refused(&put, "version"), "put: {put:?}");
    let replaced = store.replace(&schema, moved.clone(), MAX_VERSION).await;
    assert!(refused(&replaced, "version"), "replace: {replaced:?}");
    let replaced = store.replace(&schema, moved.clone(), MAX_VERSION + 1).await;
    assert!(refused(&replaced, "version"), "replace: {replaced:?}");
    let mut calls = 0;
    let updated = store
        .update(&schema, &"last".into(), &mut |mut d| {
            calls += 1;
            d.insert("note".into(), json!("never written"));
            Ok(d)
        })
        .await;
    assert!(refused(&updated, "version"), "update: {updated:?}");
    // Refused before the change is called, and not retried as a conflict would be.
    assert_eq!(calls, 0);
    let deleted = store
        .delete(&schema, &"last".into(), Some(MAX_VERSION + 1))
        .await;
    assert!(refused(&deleted, "version"), "delete: {deleted:?}");

    // Nothing was written: the record, its version and its unique value are as they were.
    let after = get(store, &schema, &"last".into()).await.expect("stored");
    assert_eq!(after, stored);
    let holder = store
        .get_by_unique(&schema, "sku", &["S1".into()])
        .await
        .expect("get_by_unique");
    assert_eq!(holder.map(|r| r.key), Some(RecordKey::new("last")));
    store
        .insert(&schema, doc(json!({"id": "other", "sku": "S2"})))
        .await
        .expect("S2 is free");

    // The last version can still be deleted, at that version.
    assert!(
        store
            .delete(&schema, &"last".into(), Some(MAX_VERSION))
            .await
            .expect("delete")
    );
    transfer
        .import_records(&schema, &[record_at("again", "S3", MAX_VERSION)])
        .await
        .expect("import at the last version");
    assert!(
        store
            .delete(&schema, &"again".into(), None)
            .await
            .expect("delete")
    );
}

/// A field name over `MAX_FIELD_NAME_BYTES`, at the top or nested in maps and lists, is
/// `InvalidInput { what: "document" }` at once on every backend (DynamoDB Local refused names
/// over 50,000 bytes with an internal error after seconds of retries); a name at the limit is
/// stored and read back.
pub async fn long_field_names_are_refused_at_any_depth(f: &Fixture) {
    let schema = versioned();
    let store = ensure(f, &schema).await;
    let over = "n".repeat(MAX_FIELD_NAME_BYTES + 1);
    let huge = "h".repeat(65_534);
    let two_byte = "é".repeat(MAX_FIELD_NAME_BYTES / 2 + 1);
    for name in [&over, &huge, &two_byte] {
        for value in [
            json!({"id": "long", name.as_str(): 1}),
            json!({"id": "long", "m": {name.as_str(): 1}}),
            json!({"id": "long", "l": [1, {"m": {name.as_str(): "x"}}]}),
        ] {
            let started = std::time::Instant::now();
            let result = store.put(&schema, doc(value)).await.map(|r| r.key);
            assert!(refused(&result, "document"), "{}: {result:?}", name.len());
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "refused at once"
            );
        }
    }
    assert_eq!(store.count(&schema).await.expect("count"), 0);
    let at_limit = "a".repeat(MAX_FIELD_NAME_BYTES);
    let nested = "é".repeat(MAX_FIELD_NAME_BYTES / 2);
    let value = json!({"id": "long", at_limit.as_str(): 1, "m": {nested.as_str(): [1]}});
    store.put(&schema, doc(value.clone())).await.expect("put");
    let read = get(store, &schema, &"long".into()).await.expect("stored");
    assert_eq!(Value::Object(read.document), value);
}

/// How a test edits a cursor.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the character at (this modulo the length) with another.
    Flip(usize, u8),
    /// Insert a character at (this modulo the length + 1).
    Insert(usize, u8),
    /// Delete the character at (this modulo the length).
    Delete(usize),
    /// Decode, change one digit of the position (the n-th modulo their count), encode again
    /// with the rest kept.
    Digit(usize, u8),
    /// Decode, move the position to another partition, encode again.
    Partition,
}

/// One random query of the property test, with the edits tried at each of its pages.
#[derive(Debug, Clone)]
struct CursorCase {
    index: bool,
    partition: u8,
    condition: Option<(u8, i64, i64)>,
    order: Order,
    limit: usize,
    edits: Vec<Option<Edit>>,
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn edit() -> impl Strategy<Value = Edit> {
    let char = (0..BASE64URL.len()).prop_map(|i| BASE64URL[i]);
    prop_oneof![
        (any::<usize>(), char.clone()).prop_map(|(at, c)| Edit::Flip(at, c)),
        (any::<usize>(), char).prop_map(|(at, c)| Edit::Insert(at, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 0u8..10).prop_map(|(at, d)| Edit::Digit(at, d)),
        Just(Edit::Partition),
    ]
}

fn cursor_case() -> impl Strategy<Value = CursorCase> {
    (
        any::<bool>(),
        0u8..3,
        prop::option::of((0u8..7, -1i64..12, -1i64..12)),
        any::<bool>(),
        1usize..6,
        prop::collection::vec(prop::option::of(edit()), 1..12),
    )
        .prop_map(
            |(index, partition, condition, descending, limit, edits)| CursorCase {
                index,
                partition,
                condition,
                order: if descending {
                    Order::Descending
                } else {
                    Order::Ascending
                },
                limit,
                edits,
            },
        )
}

impl CursorCase {
    fn query(&self) -> Query {
        let partition = ["a", "b", "c"][usize::from(self.partition)];
        let mut query = if self.index {
            Query::index("by-g", partition)
        } else {
            Query::table(partition)
        };
        if let Some((kind, x, y)) = self.condition {
            let (x, y) = (KeyValue::Int(x), KeyValue::Int(y));
            query = query.sort(match kind {
                0 => SortCondition::Eq(x),
                1 => SortCondition::Lt(x),
                2 => SortCondition::Le(x),
                3 => SortCondition::Gt(x),
                4 => SortCondition::Ge(x),
                _ => SortCondition::Between(x.clone().min(y.clone()), x.max(y)),
            });
        }
        query.order(self.order).limit(self.limit)
    }
}

/// `cursor` changed by `edit`, if the edit changes it.
fn edited(cursor: &str, edit: &Edit) -> Option<String> {
    let mut bytes = cursor.as_bytes().to_vec();
    match *edit {
        Edit::Flip(at, c) => {
            let at = at % bytes.len();
            if bytes[at] == c {
                return None;
            }
            bytes[at] = c;
        }
        Edit::Insert(at, c) => bytes.insert(at % (bytes.len() + 1), c),
        Edit::Delete(at) => {
            bytes.remove(at % bytes.len());
        }
        Edit::Digit(at, digit) => {
            let mut decoded = URL_SAFE_NO_PAD.decode(cursor).ok()?;
            // Digits of the JSON position only: a tag, if any, is the last 16 bytes.
            let json_end = decoded.len().saturating_sub(16);
            let digits: Vec<usize> = (0..json_end)
                .filter(|&i| decoded[i].is_ascii_digit())
                .collect();
            let i = *digits.get(at % digits.len().max(1))?;
            let new = b'0' + digit;
            if decoded[i] == new {
                return None;
            }
            decoded[i] = new;
            return Some(URL_SAFE_NO_PAD.encode(decoded));
        }
        Edit::Partition => {
            for (from, to) in [("\"a\"", "\"b\""), ("\"b\"", "\"c\""), ("\"c\"", "\"a\"")] {
                if let Some(edited) = reencoded(cursor, from, to) {
                    return Some(edited);
                }
            }
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The records every query of the property test runs over: three partitions of twelve keys,
/// some of them skipped, the index holding those with `g` (the partition of another record),
/// its sort key `n` with ties.
fn records(skipped: &[bool]) -> Vec<Value> {
    let mut records = Vec::new();
    for (p, partition) in ["a", "b", "c"].iter().enumerate() {
        for s in 0..12usize {
            let i = p * 12 + s;
            if skipped.get(i).copied().unwrap_or(false) {
                continue;
            }
            let mut record = json!({"p": partition, "s": s});
            if i % 5 != 4 {
                record["g"] = json!(["a", "b", "c"][(i * 7) % 3]);
                record["n"] = json!((i * 5) % 7);
            }
            records.push(record);
        }
    }
    records
}

/// What the property test exercised, so that it cannot pass by testing nothing.
#[derive(Default)]
struct Tally {
    /// Edited cursors tried (and refused).
    edits: AtomicUsize,
    /// Pages continued from a cursor.
    continued: AtomicUsize,
}

/// Runs one random query page by page on the store, trying the case's edit of each cursor
/// (refused with `InvalidInput { what: "cursor" }`) before continuing with the cursor as
/// returned; the pages together must be the reference's answer.
async fn run_cursor_case(
    store: &dyn TableStore,
    reference: &Arc<dyn TableStore>,
    schema: &TableSchema,
    case: &CursorCase,
    tally: &Tally,
) -> Result<(), String> {
    let query = case.query();
    let expected: Vec<Record> = query_stream(
        reference.clone(),
        schema.clone(),
        query.clone().limit(MAX_PAGE),
    )
    .try_collect()
    .await
    .map_err(|e| format!("the reference: {e}"))?;
    let mut got: Vec<Record> = Vec::new();
    let mut next = query.clone();
    for page in 0.. {
        if page > expected.len() + 1 {
            return Err(format!("more pages than records: {got:?}"));
        }
        let answer = store
            .query(schema, &next)
            .await
            .map_err(|e| format!("page {page}: {e:?}"))?;
        if answer.items.len() > case.limit {
            return Err(format!("page {page} holds {}", answer.items.len()));
        }
        got.extend(answer.items);
        let Some(cursor) = answer.next else { break };
        let edit = case.edits.get(page % case.edits.len()).cloned().flatten();
        if let Some(bad) = edit.as_ref().and_then(|edit| edited(&cursor, edit))
            && bad != cursor
        {
            let result = store
                .query(schema, &query.clone().after(bad.as_str()))
                .await;
            if !refused(&result, "cursor") {
                return Err(format!(
                    "page {page}: {edit:?} made {bad} of {cursor}, answered {result:?}"
                ));
            }
            tally.edits.fetch_add(1, Ordering::Relaxed);
        }
        tally.continued.fetch_add(1, Ordering::Relaxed);
        next = query.clone().after(cursor);
    }
    same_answer(case.index, &got, &expected)
}

/// The pages' records against the reference's: equal in full, except that records tying on
/// an index's sort key may come in another (stable) order on DynamoDB.
fn same_answer(index: bool, got: &[Record], expected: &[Record]) -> Result<(), String> {
    let keys =
        |records: &[Record]| -> Vec<RecordKey> { records.iter().map(|r| r.key.clone()).collect() };
    if !index {
        return (keys(got) == keys(expected))
            .then_some(())
            .ok_or_else(|| format!("got {:?}, expected {:?}", keys(got), keys(expected)));
    }
    let ns = |records: &[Record]| -> Vec<Value> {
        records.iter().map(|r| r.document["n"].clone()).collect()
    };
    let set = |records: &[Record]| -> BTreeSet<RecordKey> {
        records.iter().map(|r| r.key.clone()).collect()
    };
    if ns(got) != ns(expected) || set(got) != set(expected) || got.len() != expected.len() {
        return Err(format!(
            "got {:?} with n {:?}, expected {:?} with n {:?}",
            keys(got),
            ns(got),
            keys(expected),
            ns(expected)
        ));
    }
    Ok(())
}

/// Random queries (table and index, every sort condition, both orders, limits 1 to 5) over
/// random records, paged to the end, with random edits of the cursors: flipped, inserted and
/// deleted characters, and positions decoded, edited and encoded again with the rest of the
/// cursor kept. Every edited cursor is `InvalidInput { what: "cursor" }`; the intact cursors
/// give exactly the memory reference's answer. Set `STOREKIT_EDGES_SEED` to replay a seed.
pub async fn random_cursor_edits_are_refused_and_intact_cursors_continue(f: &Fixture) {
    let seed: u64 = std::env::var("STOREKIT_EDGES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| getrandom::u64().unwrap_or(11));
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    // A quarter of the records left out, chosen by the seed (SplitMix64 of it and the place).
    let skipped: Vec<bool> = (0..36u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % 4 == 0
        })
        .collect();

    let schema = TableSchema::builder("cursorprops", KeyDef::text("p"))
        .sort_key(KeyDef::int("s"))
        .index("by-g", KeyDef::text("g"), Some(KeyDef::int("n")))
        .build()
        .expect("valid schema");
    let store = ensure(f, &schema).await;
    let reference: Arc<dyn TableStore> = Arc::new(MemoryStore::new());
    reference.ensure_table(&schema).await.expect("ensure_table");
    let records = records(&skipped);
    for record in &records {
        store
            .insert(&schema, doc(record.clone()))
            .await
            .expect("insert");
        reference
            .insert(&schema, doc(record.clone()))
            .await
            .expect("insert");
    }
    for g in ["a", "b", "c"] {
        let count = records.iter().filter(|r| r["g"] == json!(g)).count();
        wait_for_index(store, &schema, &Query::index("by-g", g), count).await;
    }

    let config = Config {
        cases: CURSOR_CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let runs = AtomicUsize::new(0);
    let tally = Tally::default();
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&cursor_case(), |case| {
            runs.fetch_add(1, Ordering::Relaxed);
            runtime
                .block_on(run_cursor_case(store, &reference, &schema, &case, &tally))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(failure) = outcome {
        panic!("STOREKIT_EDGES_SEED={seed}: {failure}");
    }
    assert!(runs.load(Ordering::Relaxed) >= CURSOR_CASES as usize);
    let (edits, continued) = (
        tally.edits.load(Ordering::Relaxed),
        tally.continued.load(Ordering::Relaxed),
    );
    assert!(
        edits >= 10 && continued >= 20,
        "STOREKIT_EDGES_SEED={seed}: only {edits} edits and {continued} continued pages"
    );
}
