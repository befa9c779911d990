//! Sort keys: every sort condition, and the order of integer, float, text and bytes keys
//! (numeric, and unsigned byte order for text and bytes).

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    KeyDef, KeyValue, Query, RecordKey, SortCondition, TableSchema, TableStore,
};

use super::{doc, ensure, get, insert, series, sorts, words};
use crate::Fixture;

/// The values `keep` keeps, in their order, as JSON.
fn kept<T: Copy>(values: &[T], keep: impl Fn(T) -> bool) -> Vec<Value>
where
    Value: From<T>,
{
    values
        .iter()
        .copied()
        .filter(|v| keep(*v))
        .map(Value::from)
        .collect()
}

/// Queries partition `a` with each condition, ascending then descending, and compares the sort
/// keys (`field`) of the answer with the values the condition keeps, in order and reversed.
async fn each_condition_both_ways(
    store: &dyn TableStore,
    schema: &TableSchema,
    field: &str,
    conditions: Vec<(SortCondition, Vec<Value>)>,
) {
    for (condition, expected) in conditions {
        let query = Query::table("a").sort(condition.clone());
        let up = store.query(schema, &query).await.expect("query");
        assert_eq!(sorts(&up.items, field), expected, "{condition:?} ascending");
        let down = store
            .query(schema, &query.descending())
            .await
            .expect("query");
        let mut reversed = expected;
        reversed.reverse();
        assert_eq!(
            sorts(&down.items, field),
            reversed,
            "{condition:?} descending"
        );
    }
}

/// The sort keys (`field`) of the page that `query` answers, each read by `read`.
async fn read_keys<T>(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: &Query,
    field: &str,
    read: fn(&Value) -> Option<T>,
) -> Vec<T> {
    let page = store.query(schema, query).await.expect("query");
    page.items
        .iter()
        .map(|r| read(&r.document[field]).expect("a key of the field's type"))
        .collect()
}

/// Every sort condition on an integer sort key, both orders, against a plain filter.
pub async fn every_sort_condition_on_integer_keys(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let values: Vec<i64> = vec![-5, -1, 0, 1, 2, 3, 10, 11, 100];
    for n in &values {
        insert(store, &schema, json!({"p": "a", "n": n})).await;
    }
    insert(store, &schema, json!({"p": "b", "n": 1})).await;
    let within = |low: i64, high: i64| kept(&values, |n| (low..=high).contains(&n));
    let conditions = vec![
        (SortCondition::Eq(2.into()), within(2, 2)),
        (SortCondition::Lt(1.into()), within(i64::MIN, 0)),
        (SortCondition::Le(1.into()), within(i64::MIN, 1)),
        (SortCondition::Gt(3.into()), within(4, i64::MAX)),
        (SortCondition::Ge(3.into()), within(3, i64::MAX)),
        (
            SortCondition::Between((-1).into(), 10.into()),
            within(-1, 10),
        ),
    ];
    each_condition_both_ways(store, &schema, "n", conditions).await;
    let begins = store
        .query(
            &schema,
            &Query::table("a").sort(SortCondition::BeginsWith(1.into())),
        )
        .await;
    assert_matches!(
        begins,
        Err(Error::InvalidInput { .. }),
        "begins_with needs text or bytes"
    );
    let wrong = store
        .query(
            &schema,
            &Query::table("a").sort(SortCondition::Eq("2".into())),
        )
        .await;
    assert_matches!(
        wrong,
        Err(Error::InvalidInput { .. }),
        "a text value for an int key"
    );
}

/// Every sort condition on a text sort key, both orders, byte order throughout.
pub async fn every_sort_condition_on_text_keys(f: &Fixture) {
    let schema = words();
    let store = ensure(f, &schema).await;
    let values = ["A", "B", "a", "ab", "abc", "abd", "b", "z", "é", "ü"];
    for w in values {
        insert(store, &schema, json!({"p": "a", "w": w})).await;
    }
    let pick = |keep: fn(&str) -> bool| kept(&values, keep);
    let conditions = vec![
        (SortCondition::Eq("ab".into()), pick(|w| w == "ab")),
        (SortCondition::Lt("a".into()), pick(|w| w < "a")),
        (SortCondition::Le("a".into()), pick(|w| w <= "a")),
        (SortCondition::Gt("b".into()), pick(|w| w > "b")),
        (SortCondition::Ge("b".into()), pick(|w| w >= "b")),
        (
            SortCondition::Between("B".into(), "abd".into()),
            pick(|w| ("B"..="abd").contains(&w)),
        ),
        (
            SortCondition::BeginsWith("ab".into()),
            pick(|w| w.starts_with("ab")),
        ),
    ];
    assert_eq!(
        sorts(
            &store
                .query(&schema, &Query::table("a"))
                .await
                .expect("query")
                .items,
            "w"
        ),
        pick(|_| true)
    );
    each_condition_both_ways(store, &schema, "w", conditions).await;
}

/// Integer keys sort numerically from `i64::MIN` to `i64::MAX`, not as text.
pub async fn integer_order_spans_the_whole_range(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let mut values = vec![
        i64::MIN,
        i64::MIN + 1,
        -1_000_000_000_000,
        -10,
        -9,
        -1,
        0,
        1,
        9,
        10,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX - 1,
        i64::MAX,
    ];
    for n in values.iter().rev() {
        insert(store, &schema, json!({"p": "x", "n": n})).await;
    }
    let read = read_keys(store, &schema, &Query::table("x"), "n", Value::as_i64).await;
    assert_eq!(read, values);
    values.reverse();
    let query = Query::table("x").descending();
    let read = read_keys(store, &schema, &query, "n", Value::as_i64).await;
    assert_eq!(read, values);
    let got = get(store, &schema, &RecordKey::with_sort("x", i64::MIN)).await;
    assert!(got.is_some(), "i64::MIN is a key like any other");
}

/// Text and bytes sort in unsigned byte order: no locale, no case folding, no Unicode
/// normalisation (`é` precomposed and decomposed are two keys).
pub async fn text_and_bytes_sort_in_byte_order(f: &Fixture) {
    let schema = words();
    let store = ensure(f, &schema).await;
    let texts = ["Z", "a", "e\u{301}", "z", "\u{e9}", "\u{ff}", "\u{1F600}"];
    for w in texts.iter().rev() {
        insert(store, &schema, json!({"p": "t", "w": w})).await;
    }
    let page = store
        .query(&schema, &Query::table("t"))
        .await
        .expect("query");
    let mut expected: Vec<&str> = texts.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        sorts(&page.items, "w"),
        expected.iter().map(|w| json!(w)).collect::<Vec<_>>()
    );
    assert_eq!(page.items.len(), texts.len(), "é twice: two keys");

    let blobs = TableSchema::builder("blobs", KeyDef::text("p"))
        .sort_key(KeyDef::bytes("b"))
        .build()
        .expect("valid");
    store.ensure_table(&blobs).await.expect("ensure");
    let keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01],
        vec![0x7f],
        vec![0x80],
        vec![0xff],
        vec![0xff, 0x00],
    ];
    for key in keys.iter().rev() {
        let b64 = KeyValue::from(key.clone()).to_json();
        insert(store, &blobs, json!({"p": "b", "b": b64})).await;
    }
    let page = store
        .query(&blobs, &Query::table("b"))
        .await
        .expect("query");
    let read: Vec<KeyValue> = page
        .items
        .iter()
        .map(|r| r.key.sort.clone().expect("sort key"))
        .collect();
    assert_eq!(
        read,
        keys.iter().cloned().map(KeyValue::from).collect::<Vec<_>>()
    );
    let prefixed = store
        .query(
            &blobs,
            &Query::table("b").sort(SortCondition::BeginsWith(vec![0xff].into())),
        )
        .await
        .expect("query");
    assert_eq!(prefixed.items.len(), 2);
}

/// A float sort key orders numerically, negative and fractional values included, and `-0.0`
/// is `0`.
pub async fn float_keys_sort_numerically(f: &Fixture) {
    let schema = TableSchema::builder("floats", KeyDef::text("p"))
        .sort_key(KeyDef::float("x"))
        .build()
        .expect("valid");
    let store = ensure(f, &schema).await;
    let values = [
        -1e100, -2.5, -1.0, -1e-100, 0.0, 1e-100, 0.1, 0.5, 1.0, 2.0, 10.0, 1e20, 1.5e125,
    ];
    for x in values.iter().rev() {
        insert(store, &schema, json!({"p": "f", "x": x})).await;
    }
    let zero = store
        .insert(&schema, doc(json!({"p": "f", "x": -0.0})))
        .await;
    assert_matches!(
        zero,
        Err(Error::AlreadyExists { what: "record" }),
        "-0.0 is 0"
    );
    let read = read_keys(store, &schema, &Query::table("f"), "x", Value::as_f64).await;
    assert_eq!(read, values);
    let between = store
        .query(
            &schema,
            &Query::table("f").sort(SortCondition::Between((-1.0).into(), 0.5.into())),
        )
        .await
        .expect("query");
    assert_eq!(between.items.len(), 6);
}
