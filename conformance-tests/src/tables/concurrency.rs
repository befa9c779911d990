//! Many tasks writing one record at once: one insert wins, no update is lost, and every
//! successful write is counted in the record's version.

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::Document;

use super::{doc, ensure, get, insert, store, things};
use crate::Fixture;

/// 32 tasks insert one key at once: exactly one wins, the rest are `AlreadyExists`.
pub async fn concurrent_inserts_of_one_key_have_one_winner(f: &Fixture) {
    let schema = things();
    ensure(f, &schema).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, schema) = (store(f), schema.clone());
            tokio::spawn(async move {
                store
                    .insert(&schema, doc(json!({"id": "one", "by": i})))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(_) => winners.push(i),
            Err(Error::AlreadyExists { what: "record" }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one insert wins");
    let stored = f
        .tables()
        .get(&schema, &"one".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.document["by"], json!(winners[0]));
    assert_eq!(stored.version, 1);
}

/// 16 tasks each add one to a counter through `update` ten times: nothing is lost.
pub async fn concurrent_updates_lose_nothing(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "counter", "n": 0, "by": []})).await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (store, schema) = (super::store(f), schema.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut change = |mut d: Document| {
                        let n = d["n"].as_i64().unwrap_or_default();
                        d.insert("n".into(), json!(n + 1));
                        if let Some(Value::Array(by)) = d.get_mut("by") {
                            by.push(json!(task));
                        }
                        Ok(d)
                    };
                    store
                        .update(&schema, &"counter".into(), &mut change)
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let end = get(store, &schema, &"counter".into())
        .await
        .expect("stored");
    assert_eq!(end.document["n"], json!(160));
    assert_eq!(end.document["by"].as_array().map(Vec::len), Some(160));
    assert_eq!(end.version, 161);
    let mut refuse = |_: Document| Err(Error::invalid("change", "no"));
    let refused = store.update(&schema, &"counter".into(), &mut refuse).await;
    assert_matches!(refused, Err(Error::InvalidInput { what: "change", .. }));
    let mut rekey = |mut d: Document| {
        d.insert("id".into(), json!("other"));
        Ok(d)
    };
    assert_matches!(
        store.update(&schema, &"counter".into(), &mut rekey).await,
        Err(Error::InvalidInput { .. })
    );
    let mut keep = Ok;
    assert_matches!(
        store.update(&schema, &"missing".into(), &mut keep).await,
        Err(Error::NotFound { what: "record" })
    );
    assert_eq!(
        get(store, &schema, &"counter".into())
            .await
            .map(|r| r.version),
        Some(161)
    );
}

/// 32 tasks put and replace three records at once, each sku moving between them: every
/// successful write bumps its record's version exactly once, a failed one changes nothing, and
/// the unique values end held by the records that hold them.
pub async fn mixed_writers_on_three_keys_account_for_every_success(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for k in 0..3 {
        insert(store, &schema, json!({"id": format!("k{k}"), "n": 0})).await;
    }
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (store, schema) = (super::store(f), schema.clone());
            tokio::spawn(async move {
                let mut successes = [0u64; 3];
                for round in 0..8usize {
                    let k = (task + round) % 3;
                    let id = format!("k{k}");
                    let sku = format!("S{}", (task + round) % 4);
                    let record = doc(json!({"id": id, "n": task, "sku": sku}));
                    let written = if round % 2 == 0 {
                        store.put(&schema, record).await
                    } else {
                        let read = get(&*store, &schema, &id.as_str().into()).await;
                        let version = read.expect("never deleted").version;
                        store.replace(&schema, record, version).await
                    };
                    match written {
                        Ok(_) => successes[k] += 1,
                        Err(
                            Error::Conflict { .. }
                            | Error::AlreadyExists {
                                what: "unique value",
                            },
                        ) => {}
                        // A deadlock the server broke by rolling this write back, after the
                        // store's own retries: nothing was applied, so the count holds.
                        Err(e @ Error::Unavailable { .. }) if !e.may_have_been_applied() => {}
                        Err(e) => panic!("unexpected {}: {e}", e.kind()),
                    }
                }
                successes
            })
        })
        .collect();
    let mut successes = [0u64; 3];
    for task in tasks {
        let done = task.await.expect("task");
        for k in 0..3 {
            successes[k] += done[k];
        }
    }
    let mut holders = Vec::new();
    for (k, writes) in successes.iter().enumerate() {
        let record = get(store, &schema, &format!("k{k}").as_str().into())
            .await
            .expect("stored");
        assert_eq!(
            record.version,
            writes + 1,
            "k{k}: one version per successful write"
        );
        if let Some(sku) = record.document.get("sku").and_then(Value::as_str) {
            holders.push((sku.to_owned(), record.key));
        }
    }
    let distinct: std::collections::HashSet<&String> = holders.iter().map(|(sku, _)| sku).collect();
    assert_eq!(
        distinct.len(),
        holders.len(),
        "a sku held twice: {holders:?}"
    );
    for (sku, key) in holders {
        let found = store
            .get_by_unique(&schema, "sku", &[sku.as_str().into()])
            .await
            .expect("lookup");
        assert_eq!(
            found.map(|r| r.key),
            Some(key),
            "{sku} points at its holder"
        );
    }
}
