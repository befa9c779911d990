//! Projections: projected gets and [`Query::select`] return the partial documents the
//! reference ([`Projection::apply`], DynamoDB's `ProjectionExpression` rule) gives, plus the
//! table's key fields, on every backend.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    Condition, KeyDef, Projection, Query, Record, RecordKey, Table, TableSchema, TableStore,
};

use crate::Fixture;
use crate::expressions::all_pages;
use crate::tables::{doc, settled};

/// `projs`: partition `p`, sort `n`; the query index `by-kind` on (`kind`, `rank`); records
/// expire at `expires` (epoch seconds).
fn schema() -> TableSchema {
    TableSchema::builder("projs", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("rank")))
        .ttl("expires")
        .build()
        .expect("valid schema")
}

async fn ensure(f: &Fixture) -> (&dyn TableStore, TableSchema) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    (store, schema)
}

/// The document every path case reads: nested maps, lists of maps, a list of numbers, an
/// empty map, scalars.
fn nested() -> Value {
    json!({
        "p": "a", "n": 1, "kind": "k", "rank": 4,
        "a": {"b": [{"c": 1, "d": 2}, {"c": 3}, {"c": 5, "e": 6}, {"z": 9}],
              "m": {"n": 1}, "empty": {}},
        "l": [10, 11, 12, 13], "num": 5, "s": "str", "t": true, "nil": null
    })
}

/// Reads `record` with each selection through `get_selected` and checks the answer against
/// the reference and, where given, against what DynamoDB Local answered.
async fn check_selections(
    store: &dyn TableStore,
    schema: &TableSchema,
    key: &RecordKey,
    cases: &[(&[&str], Value)],
) {
    let full = store.get(schema, key).await.expect("get").expect("stored");
    for (paths, expected) in cases {
        let select = Projection::new(paths.iter().copied());
        let got = store
            .get_selected(schema, key, &select)
            .await
            .expect("get_selected")
            .expect("found");
        assert_eq!(got.key, full.key, "{paths:?}");
        assert_eq!(got.version, full.version, "{paths:?}: the version is kept");
        assert_eq!(
            got.document,
            select.apply(schema, &full.document),
            "{paths:?}"
        );
        let mut with_keys = expected.as_object().cloned().unwrap_or_default();
        with_keys.insert("p".into(), full.document["p"].clone());
        with_keys.insert("n".into(), full.document["n"].clone());
        assert_eq!(
            Value::Object(got.document),
            Value::Object(with_keys),
            "{paths:?}"
        );
    }
}

/// Inserts the [`nested`] document and checks each selection on it (see
/// [`check_selections`]).
async fn check_nested(f: &Fixture, cases: &[(&[&str], Value)]) {
    let (store, schema) = ensure(f).await;
    store.insert(&schema, doc(nested())).await.expect("insert");
    check_selections(store, &schema, &RecordKey::with_sort("a", 1), cases).await;
}

/// Top-level fields and paths into nested maps keep their values at their places, with the
/// table's key fields, and never the fields left out.
pub async fn top_level_and_nested_paths_follow_the_reference(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    store.put(&schema, doc(nested())).await.expect("put");
    store.put(&schema, doc(nested())).await.expect("put again");
    let key = RecordKey::with_sort("a", 1);
    check_selections(
        store,
        &schema,
        &key,
        &[
            (&["s", "num"], json!({"s": "str", "num": 5})),
            (&["t", "nil"], json!({"t": true, "nil": null})),
            (&["a.m"], json!({"a": {"m": {"n": 1}}})),
            (&["a.m.n", "s"], json!({"a": {"m": {"n": 1}}, "s": "str"})),
            (&["a.empty"], json!({"a": {"empty": {}}})),
            (&["kind", "p"], json!({"kind": "k"})),
            (
                &["a.b[0].c", "a.b[0].d"],
                json!({"a": {"b": [{"c": 1, "d": 2}]}}),
            ),
        ],
    )
    .await;
}

/// Selected list elements keep the list's order but not their positions, as DynamoDB
/// answers: `a.b[2].c` is `{a: {b: [{c}]}}`, and `l[3]`, `l[1]` is `{l: [l1, l3]}`.
pub async fn list_elements_keep_their_order_not_their_positions(f: &Fixture) {
    check_nested(
        f,
        &[
            (&["a.b[2].c"], json!({"a": {"b": [{"c": 5}]}})),
            (
                &["a.b[2].c", "a.b[0].c"],
                json!({"a": {"b": [{"c": 1}, {"c": 5}]}}),
            ),
            (&["a.b[2].c", "a.b[3].c"], json!({"a": {"b": [{"c": 5}]}})),
            (&["l[3]", "l[1]"], json!({"l": [11, 13]})),
            (&["l[0]", "l[7]"], json!({"l": [10]})),
            (&["a.b[3]"], json!({"a": {"b": [{"z": 9}]}})),
        ],
    )
    .await;
}

/// A path the record does not have is left out without an error: a missing field, an index
/// past a list's end, a field of a scalar or of a list, an index into a map.
pub async fn missing_paths_are_left_out_without_error(f: &Fixture) {
    check_nested(
        f,
        &[
            (&["missing"], json!({})),
            (&["l[7]"], json!({})),
            (&["a.b[3].c"], json!({})),
            (&["a.m.x"], json!({})),
            (&["num.x"], json!({})),
            (&["num[0]"], json!({})),
            (&["l.x"], json!({})),
            (&["a[0]"], json!({})),
            (&["missing", "s"], json!({"s": "str"})),
        ],
    )
    .await;
}

/// The filter tests the whole record, then the page holds the selected paths of the records
/// that met it: the same records, pages and cursors as without a selection.
pub async fn select_with_a_filter_tests_the_whole_record(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    for n in 0..30_i64 {
        let document = json!({"p": "f", "n": n, "hit": n % 4 == 1, "info": {"x": n, "y": -n},
                              "pad": "padding"});
        store.insert(&schema, doc(document)).await.expect("insert");
    }
    // The filter is on `hit`, which is not selected.
    let plain = Query::table("f")
        .filter(Condition::eq("hit", true))
        .limit(3);
    let selected = plain.clone().select(["info.x"]);
    let (whole, whole_sizes) = all_pages(store, &schema, &plain).await;
    let (partial, sizes) = all_pages(store, &schema, &selected).await;
    assert_eq!(sizes, whole_sizes, "the same pages");
    assert_eq!(sizes, [3, 3, 2]);
    let select = Projection::new(["info.x"]);
    let expected: Vec<Record> = whole
        .into_iter()
        .map(|mut r| {
            r.document = select.apply(&schema, &r.document);
            r
        })
        .collect();
    assert_eq!(partial, expected);
    assert_eq!(
        Value::Object(partial[0].document.clone()),
        json!({"p": "f", "n": 1, "info": {"x": 1}})
    );
}

/// An index query with a selection pages through cursors exactly as without one, in the
/// index's order; the index's sort key is not in the records unless selected, and a cursor
/// of the query without a selection continues the selected one (the selection is not part
/// of the query a cursor is bound to).
pub async fn select_on_an_index_query_pages_through_cursors(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    for n in 0..10_i64 {
        let document = json!({"p": format!("q{}", n % 3), "n": n, "kind": "k", "rank": 100 - n,
                              "name": format!("r{n}"), "extra": [n, n]});
        store.insert(&schema, doc(document)).await.expect("insert");
    }
    let all = Query::index("by-kind", "k").limit(100);
    settled(store, &schema, &all, |page| page.items.len() == 10).await;
    let query = Query::index("by-kind", "k").limit(3).select(["name"]);
    let (records, sizes) = all_pages(store, &schema, &query).await;
    assert_eq!(sizes, [3, 3, 3, 1]);
    let names: Vec<Value> = records
        .iter()
        .map(|r| Value::Object(r.document.clone()))
        .collect();
    let expected: Vec<Value> = (0..10_i64)
        .rev()
        .map(|n| json!({"p": format!("q{}", n % 3), "n": n, "name": format!("r{n}")}))
        .collect();
    assert_eq!(names, expected, "ascending by rank, keys and name only");
    // Descending, with the sort key selected.
    let query = Query::index("by-kind", "k")
        .descending()
        .limit(4)
        .select(["rank"]);
    let (records, _) = all_pages(store, &schema, &query).await;
    let ranks: Vec<i64> = records
        .iter()
        .map(|r| r.document["rank"].as_i64().expect("rank"))
        .collect();
    assert_eq!(ranks, (91..=100).rev().collect::<Vec<_>>());
    // A cursor of the unselected query continues the selected one.
    let first = store
        .query(&schema, &Query::index("by-kind", "k").limit(4))
        .await
        .expect("query");
    let rest = store
        .query(
            &schema,
            &Query::index("by-kind", "k")
                .limit(100)
                .select(["extra[1]"])
                .after(first.next.expect("more")),
        )
        .await
        .expect("query");
    let extras: Vec<Value> = rest
        .items
        .iter()
        .map(|r| r.document["extra"].clone())
        .collect();
    assert_eq!(
        extras,
        (0..6_i64).rev().map(|n| json!([n])).collect::<Vec<_>>()
    );
}

/// A projected get of a record that does not exist is `None`, not an error; a projected
/// `get_many` keeps the order of its keys, repeats and misses.
pub async fn a_projected_get_of_a_missing_record_is_none(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    store.insert(&schema, doc(nested())).await.expect("insert");
    let select = Projection::new(["s", "l[0]"]);
    let missing = store
        .get_selected(&schema, &RecordKey::with_sort("a", 2), &select)
        .await
        .expect("get_selected");
    assert_eq!(missing, None);
    let here = RecordKey::with_sort("a", 1);
    let keys = [
        RecordKey::with_sort("zz", 1),
        here.clone(),
        RecordKey::with_sort("a", 2),
        here.clone(),
    ];
    let found = store
        .get_many_selected(&schema, &keys, &select)
        .await
        .expect("get_many_selected");
    let documents: Vec<Option<Value>> = found
        .into_iter()
        .map(|r| r.map(|r| Value::Object(r.document)))
        .collect();
    let expected = json!({"p": "a", "n": 1, "s": "str", "l": [10]});
    assert_eq!(
        documents,
        [None, Some(expected.clone()), None, Some(expected)]
    );
}

/// Selections that overlap or conflict, are empty, too many, too long, or not paths are
/// `InvalidInput` (`"projection"`) from every projected read, before any backend runs: also
/// on a table that does not exist.
pub async fn bad_selections_are_invalid_input(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    store.insert(&schema, doc(nested())).await.expect("insert");
    let many: Vec<String> = (0..=storekit_core::table::MAX_SELECTED_PATHS)
        .map(|n| format!("f{n}"))
        .collect();
    let long = "x".repeat(storekit_core::table::MAX_FIELD_NAME_BYTES + 1);
    let bad: Vec<Projection> = vec![
        Projection::new(["a", "a.b"]),
        Projection::new(["a.b", "a[0]"]),
        Projection::new(["l[1]", "l[1]"]),
        Projection::new(["s", "s"]),
        Projection::new(["a.b[0]", "a.b[0].c"]),
        Projection::new(Vec::<String>::new()),
        Projection::new(many),
        Projection::new([long]),
        Projection::new(["a..b"]),
        Projection::new(["l[x]"]),
        Projection::new(["_storekit_version"]),
    ];
    let absent = TableSchema::builder("never_made", KeyDef::text("p"))
        .build()
        .expect("valid schema");
    let key = RecordKey::with_sort("a", 1);
    for select in &bad {
        let refused = |result: Result<(), Error>| {
            assert_matches!(
                result,
                Err(Error::InvalidInput {
                    what: "projection",
                    ..
                }),
                "{select:?}"
            );
        };
        refused(store.get_selected(&schema, &key, select).await.map(drop));
        refused(
            store
                .get_many_selected(&schema, std::slice::from_ref(&key), select)
                .await
                .map(drop),
        );
        let query = Query::table("a").select(select.paths().iter().cloned());
        refused(store.query(&schema, &query).await.map(drop));
        refused(
            store
                .get_selected(&absent, &RecordKey::new("a"), select)
                .await
                .map(drop),
        );
    }
}

/// A record that has expired is never read through a projection either, although its ttl
/// field is not selected.
pub async fn expired_records_are_not_read_through_a_projection(f: &Fixture) {
    let (store, schema) = ensure(f).await;
    for (n, expires) in [(1, 1_u64), (2, 4_102_444_800)] {
        let document = json!({"p": "t", "n": n, "expires": expires, "s": "x"});
        store.insert(&schema, doc(document)).await.expect("insert");
    }
    let select = Projection::new(["s"]);
    let old = store
        .get_selected(&schema, &RecordKey::with_sort("t", 1), &select)
        .await
        .expect("get_selected");
    assert_eq!(old, None);
    let new = store
        .get_selected(&schema, &RecordKey::with_sort("t", 2), &select)
        .await
        .expect("get_selected")
        .expect("alive");
    assert_eq!(
        Value::Object(new.document),
        json!({"p": "t", "n": 2, "s": "x"})
    );
    let page = store
        .query(&schema, &Query::table("t").select(["s"]))
        .await
        .expect("query");
    let numbers: Vec<i64> = page
        .items
        .iter()
        .map(|r| r.document["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, [2]);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    p: String,
    n: i64,
    status: String,
    lines: Vec<Line>,
    notes: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Summary {
    n: i64,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Skus {
    lines: Vec<SkuOnly>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SkuOnly {
    sku: String,
}

/// The typed table reads partial documents as a second serde type (`query_as`, `get_as`,
/// `get_many_as`), with the record's version; a type the selection cannot fill is
/// `InvalidInput` (`"projection"`).
pub async fn typed_partial_records_read_as_a_second_type(f: &Fixture) {
    let table: Table<Order> = Table::new(f.tables().clone(), schema());
    table.ensure().await.expect("ensure");
    for n in 1..=3 {
        let order = Order {
            p: "c".into(),
            n,
            status: if n == 2 { "shipped" } else { "open" }.into(),
            lines: vec![
                Line {
                    sku: format!("s{n}"),
                    qty: 1,
                },
                Line {
                    sku: "extra".into(),
                    qty: 2,
                },
            ],
            notes: "long text".into(),
        };
        table.insert(&order).await.expect("insert");
    }
    table
        .patch(
            RecordKey::with_sort("c", 2),
            storekit_core::table::Patch::new().set("notes", "x"),
        )
        .await
        .expect("patch");
    let page = table
        .query_as::<Summary>(Query::table("c").select(["status"]))
        .await
        .expect("query_as");
    let got: Vec<(i64, String, u64)> = page
        .items
        .into_iter()
        .map(|v| (v.record.n, v.record.status, v.version))
        .collect();
    assert_eq!(
        got,
        [
            (1, "open".to_owned(), 1),
            (2, "shipped".to_owned(), 2),
            (3, "open".to_owned(), 1)
        ]
    );
    let skus = table
        .get_as::<Skus>(
            RecordKey::with_sort("c", 3),
            &Projection::new(["lines[0].sku"]),
        )
        .await
        .expect("get_as")
        .expect("found");
    assert_eq!(
        skus.record.lines,
        [SkuOnly {
            sku: "s3".to_owned()
        }]
    );
    let many = table
        .get_many_as::<Summary>(
            &[RecordKey::with_sort("c", 9), RecordKey::with_sort("c", 1)],
            &Projection::new(["status"]),
        )
        .await
        .expect("get_many_as");
    assert_eq!(
        many.into_iter()
            .map(|v| v.map(|v| v.record))
            .collect::<Vec<_>>(),
        [
            None,
            Some(Summary {
                n: 1,
                status: "open".into()
            })
        ]
    );
    // `notes` is not selected, so the partial document cannot be a whole `Order`.
    let wrong = table
        .get_as::<Order>(RecordKey::with_sort("c", 1), &Projection::new(["status"]))
        .await;
    assert_matches!(
        wrong,
        Err(Error::InvalidInput {
            what: "projection",
            ..
        })
    );
    let wrong = table
        .query_as::<Summary>(Query::table("c").select(["lines"]))
        .await;
    assert_matches!(
        wrong,
        Err(Error::InvalidInput {
            what: "projection",
            ..
        })
    );
}
