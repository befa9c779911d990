//! Unique indexes: one holder per value under races, values that move and free with
//! updates and deletes, composite values and several indexes on one table.

use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{KeyValue, RecordKey};

use super::{doc, ensure, get, insert, store, things};
use crate::Fixture;

/// 32 tasks race for one unique value, 20 times: one winner each round, found at once by
/// `get_by_unique`.
pub async fn racing_for_a_unique_value_has_one_winner_each_round(f: &Fixture) {
    let schema = things();
    ensure(f, &schema).await;
    for round in 0..20 {
        let sku = format!("SKU-{round}");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (store, schema, sku) = (store(f), schema.clone(), sku.clone());
                tokio::spawn(async move {
                    store
                        .insert(
                            &schema,
                            doc(json!({"id": format!("r{round}-{i}"), "sku": sku})),
                        )
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(record) => winners.push(record),
                Err(Error::AlreadyExists {
                    what: "unique value",
                }) => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        let found = f
            .tables()
            .get_by_unique(&schema, "sku", &[KeyValue::from(sku)])
            .await
            .expect("get_by_unique")
            .expect("visible at once");
        assert_eq!(found.key, winners[0].key);
    }
    assert_eq!(
        f.tables().count(&schema).await.expect("count"),
        20,
        "losers wrote nothing"
    );
}

/// A unique value moves with an update and is free again after it, and after a delete.
pub async fn unique_values_move_and_free_on_update_and_delete(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "a", "sku": "X"})).await;
    let taken = store
        .insert(&schema, doc(json!({"id": "b", "sku": "X"})))
        .await;
    assert_matches!(
        taken,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    store
        .replace(&schema, doc(json!({"id": "a", "sku": "Y"})), 1)
        .await
        .expect("move X to Y");
    let by_y = store
        .get_by_unique(&schema, "sku", &["Y".into()])
        .await
        .expect("lookup");
    assert_eq!(by_y.map(|r| r.key), Some(RecordKey::new("a")));
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["X".into()])
            .await
            .expect("lookup"),
        None
    );
    insert(store, &schema, json!({"id": "b", "sku": "X"})).await;
    let moved = store
        .put(&schema, doc(json!({"id": "b", "sku": "Y"})))
        .await;
    assert_matches!(
        moved,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    assert!(
        store
            .delete(&schema, &"a".into(), None)
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["Y".into()])
            .await
            .expect("lookup"),
        None
    );
    store
        .put(&schema, doc(json!({"id": "b", "sku": "Y"})))
        .await
        .expect("Y is free");
    let unset = store
        .put(&schema, doc(json!({"id": "b"})))
        .await
        .expect("drop the sku");
    assert_eq!(unset.version, 3);
    insert(store, &schema, json!({"id": "c", "sku": "Y"})).await;
    insert(store, &schema, json!({"id": "d", "sku": "X"})).await;
}

/// Two unique indexes, one of them on two fields: each is enforced on its own, and a
/// composite value is taken only when every component matches.
pub async fn composite_and_multiple_unique_indexes(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "a", "sku": "S", "a": "x", "b": 1}),
    )
    .await;
    insert(store, &schema, json!({"id": "b", "a": "x", "b": 2})).await;
    insert(store, &schema, json!({"id": "c", "a": "y", "b": 1})).await;
    insert(store, &schema, json!({"id": "d", "a": "x"})).await;
    insert(store, &schema, json!({"id": "e", "a": "x"})).await;
    let pair = store
        .insert(&schema, doc(json!({"id": "f", "a": "x", "b": 1})))
        .await;
    assert_matches!(
        pair,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    let sku = store
        .insert(
            &schema,
            doc(json!({"id": "f", "sku": "S", "a": "z", "b": 9})),
        )
        .await;
    assert_matches!(
        sku,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    assert_eq!(
        get(store, &schema, &"f".into()).await,
        None,
        "nothing half-written"
    );
    let found = store
        .get_by_unique(&schema, "pair", &["x".into(), 2.into()])
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.key), Some(RecordKey::new("b")));
    let wrong = store.get_by_unique(&schema, "pair", &["x".into()]).await;
    assert_matches!(wrong, Err(Error::InvalidInput { .. }));
    insert(
        store,
        &schema,
        json!({"id": "f", "sku": "S2", "a": "z", "b": 9}),
    )
    .await;
}
