//! Limits on keys and documents, the same on every backend, and numbers that read back as the
//! write returned them.

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{MAX_DOCUMENT_BYTES, MAX_KEY_BYTES, RecordKey, Scan, dynamodb_size};

use super::{doc, ensure, get, insert, series, things};
use crate::Fixture;

/// Keys: the declared type, present, not empty, at most 1,024 bytes, no NUL; lookups with a
/// wrong key are `InvalidInput` before the database sees them.
pub async fn key_limits_are_enforced(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let long = "k".repeat(MAX_KEY_BYTES);
    insert(store, &schema, json!({"p": long, "n": i64::MAX})).await;
    assert!(
        store
            .contains(&schema, &RecordKey::with_sort(long.as_str(), i64::MAX))
            .await
            .expect("contains")
    );
    let refused = [
        json!({"p": format!("{long}k"), "n": 1}),
        json!({"p": "", "n": 1}),
        json!({"p": "a\u{0}b", "n": 1}),
        json!({"p": "a"}),
        json!({"n": 1}),
        json!({"p": 1, "n": 1}),
        json!({"p": "a", "n": 1.5}),
        json!({"p": "a", "n": "1"}),
        json!({"p": "a", "n": u64::MAX}),
    ];
    for bad in refused {
        let result = store.insert(&schema, doc(bad.clone())).await;
        assert_matches!(result, Err(Error::InvalidInput { .. }), "{bad}");
    }
    for key in [
        RecordKey::new("a"),
        RecordKey::with_sort(1, 1),
        RecordKey::with_sort("", 1),
    ] {
        let result = store.get(&schema, &key).await;
        assert_matches!(result, Err(Error::InvalidInput { .. }), "{key:?}");
    }
    assert_eq!(store.count(&schema).await.expect("count"), 1);
}

/// Documents: DynamoDB's item size (400 KB, by its rule), no NUL, no reserved field, numbers
/// in range, bounded nesting; the largest allowed document round-trips.
pub async fn document_limits_are_enforced(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let mut largest = doc(json!({"id": "big", "blob": ""}));
    let room = MAX_DOCUMENT_BYTES - dynamodb_size(&largest);
    largest.insert("blob".into(), json!("é".repeat(room / 2)));
    let stored = store
        .insert(&schema, largest.clone())
        .await
        .expect("the largest document");
    assert_eq!(stored.document, largest);
    assert_eq!(
        get(store, &schema, &"big".into()).await.map(|r| r.document),
        Some(largest)
    );
    let over = store
        .insert(
            &schema,
            doc(json!({"id": "over", "blob": "x".repeat(MAX_DOCUMENT_BYTES)})),
        )
        .await;
    assert_matches!(
        over,
        Err(Error::ValueTooLarge {
            what: "document",
            ..
        })
    );
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    for bad in [
        json!({"id": "x", "s": "nul\u{0}"}),
        json!({"id": "x", "_storekit_version": 7}),
        json!({"id": "x", "n": 1e200}),
        json!({"id": "x", "n": -1e-200}),
        json!({"id": "x", "m": {"": 1}}),
        json!({"id": "x", "deep": deep}),
    ] {
        let result = store.insert(&schema, doc(bad.clone())).await;
        assert_matches!(result, Err(Error::InvalidInput { .. }));
    }
    assert_eq!(store.count(&schema).await.expect("count"), 1);
}

/// Numbers DynamoDB would change read back the same on every backend: as the write returned.
pub async fn numbers_read_back_equal_everywhere(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let written = insert(
        store,
        &schema,
        json!({"id": "n", "v": [2.0, -0.0, 0.5, 1e19, u64::MAX, i64::MIN, null, 1e20, 0.1, 1e125, -1e-129],
               "m": {"a": {"b": 1.0, "c": [true, "é"]}, "e": {}}, "l": []}),
    )
    .await;
    let expected = json!({"id": "n", "v": [2, 0, 0.5, 10_000_000_000_000_000_000_u64, u64::MAX, i64::MIN, null, 1e20, 0.1, 1e125, -1e-129],
                          "m": {"a": {"b": 1, "c": [true, "é"]}, "e": {}}, "l": []});
    assert_eq!(Value::Object(written.document.clone()), expected);
    let read = get(store, &schema, &"n".into()).await.expect("stored");
    assert_eq!(read.document, written.document);
    let scanned = store
        .scan(&schema, &Scan::new().limit(10))
        .await
        .expect("scan");
    assert_eq!(scanned.items[0].document, written.document);
}
