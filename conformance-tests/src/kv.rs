//! Cases for the key-value store.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use storekit_core::{Error, KvStore, KvStoreExt as _, LIMITS, Ttl};

use crate::Fixture;

async fn keys_of(kv: &dyn KvStore, namespace: &str, prefix: &str) -> HashSet<String> {
    kv.keys(namespace, prefix)
        .try_collect()
        .await
        .expect("keys")
}

/// Set, get, overwrite, contains, delete; binary and empty values.
pub async fn kv_round_trip(f: &Fixture) {
    let kv = &*f.kv;
    assert_eq!(kv.get("ns", "k").await.expect("get"), None);
    assert!(!kv.contains("ns", "k").await.expect("contains"));
    kv.set("ns", "k", b"one", None).await.expect("set");
    assert_eq!(
        kv.get("ns", "k").await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    kv.set("ns", "k", b"two", None).await.expect("overwrite");
    assert_eq!(
        kv.get("ns", "k").await.expect("get").as_deref(),
        Some(&b"two"[..])
    );
    assert!(kv.contains("ns", "k").await.expect("contains"));
    assert_eq!(
        kv.get("other", "k").await.expect("get"),
        None,
        "namespaces are separate"
    );

    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    kv.set("ns", "bin", &binary, None).await.expect("binary");
    assert_eq!(kv.get("ns", "bin").await.expect("get"), Some(binary));
    kv.set("ns", "empty", b"", None).await.expect("empty value");
    assert_eq!(kv.get("ns", "empty").await.expect("get"), Some(Vec::new()));
    let unicode = "ключ/🔑 with spaces";
    kv.set("ns", unicode, b"u", None)
        .await
        .expect("unicode key");
    assert_eq!(
        kv.get("ns", unicode).await.expect("get").as_deref(),
        Some(&b"u"[..])
    );

    assert!(kv.delete("ns", "k").await.expect("delete"));
    assert!(!kv.delete("ns", "k").await.expect("delete twice"));
    assert_eq!(kv.get("ns", "k").await.expect("get"), None);
}

/// An expired item is never returned — by get, contains, get_many, keys — and counts as
/// absent for set_if_absent, compare_and_swap and increment, even before it is purged.
pub async fn kv_ttl_expired_items_are_never_returned(f: &Fixture) {
    let kv = &*f.kv;
    // Long enough for the writes below to land before it passes, even on a slow server (a
    // database in a container on a loaded machine can take 50 ms a commit).
    let ttl = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    for key in ["gone", "gone2", "cas", "absent", "count"] {
        kv.set("ttl", key, b"7", Some(ttl)).await.expect("set");
    }
    kv.set("ttl", "stays", b"s", None).await.expect("set");
    kv.set("ttl", "long", b"l", Some(Duration::from_secs(3600)))
        .await
        .expect("set");
    let live = kv.get("ttl", "gone").await.expect("get");
    // Only a read made well within the TTL can be expected to find the item.
    if started.elapsed() < ttl / 2 {
        assert_eq!(
            live.as_deref(),
            Some(&b"7"[..]),
            "a live item was not returned"
        );
    }
    let expired_at = started + ttl + Duration::from_millis(400);
    tokio::time::sleep(expired_at.saturating_duration_since(std::time::Instant::now())).await;

    assert_eq!(kv.get("ttl", "gone").await.expect("get"), None);
    assert!(!kv.contains("ttl", "gone").await.expect("contains"));
    let many = kv
        .get_many("ttl", &["gone", "stays", "long"])
        .await
        .expect("get_many");
    assert_eq!(many, vec![None, Some(b"s".to_vec()), Some(b"l".to_vec())]);
    let keys = keys_of(kv, "ttl", "").await;
    assert_eq!(keys, HashSet::from(["stays".into(), "long".into()]));
    assert!(
        !kv.delete("ttl", "gone2").await.expect("delete"),
        "an expired item was not live"
    );

    assert!(
        kv.set_if_absent("ttl", "absent", b"new", None)
            .await
            .expect("sia")
    );
    assert_eq!(
        kv.get("ttl", "absent").await.expect("get").as_deref(),
        Some(&b"new"[..])
    );
    assert!(
        kv.compare_and_swap("ttl", "cas", None, b"new", None)
            .await
            .expect("cas")
    );
    assert_eq!(
        kv.increment("ttl", "count", 1, None).await.expect("incr"),
        1,
        "restarts at 0"
    );

    // Expired items are kept for the store's `keep_expired` (for `get_stale`); past it, a
    // purge may delete them.
    tokio::time::sleep(kv.keep_expired()).await;
    let purged = kv.purge_expired().await.expect("purge");
    // Only 'gone' was still expired (the others were written again or deleted).
    let expected = u64::from(f.capabilities.purge_on_demand);
    assert_eq!(purged, expected, "purged {purged}");
    assert_eq!(
        kv.get("ttl", "stays").await.expect("get").as_deref(),
        Some(&b"s"[..])
    );
    let err = kv
        .set("ttl", "zero", b"x", Some(Duration::ZERO))
        .await
        .expect_err("zero ttl");
    assert_matches!(err, Error::InvalidInput { what: "ttl", .. });
}

/// Batches larger than any backend's single request; duplicates; all-or-nothing validation.
pub async fn kv_batches(f: &Fixture) {
    let kv = &*f.kv;
    let keys: Vec<String> = (0..250).map(|i| format!("item-{i:03}")).collect();
    let values: Vec<Vec<u8>> = (0..250)
        .map(|i| format!("value {i}").into_bytes())
        .collect();
    let items: Vec<(&str, &[u8])> = keys
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(Vec::as_slice))
        .collect();
    kv.set_many("batch", &items, None).await.expect("set_many");

    let mut probe: Vec<&str> = keys.iter().map(String::as_str).collect();
    probe.push("missing");
    probe.push("item-007");
    let got = kv.get_many("batch", &probe).await.expect("get_many");
    assert_eq!(got.len(), 252);
    for (i, value) in values.iter().enumerate() {
        assert_eq!(got[i].as_ref(), Some(value), "item {i}");
    }
    assert_eq!(got[250], None);
    assert_eq!(
        got[251].as_deref(),
        Some(&b"value 7"[..]),
        "a repeated key is answered twice"
    );
    assert_eq!(kv.get_many("batch", &[]).await.expect("empty").len(), 0);

    let deleted: Vec<&str> = keys[..200].iter().map(String::as_str).collect();
    kv.delete_many("batch", &deleted)
        .await
        .expect("delete_many");
    assert_eq!(keys_of(kv, "batch", "").await.len(), 50);

    kv.set_many("dups", &[("k", b"first"), ("k", b"last")], None)
        .await
        .expect("dups");
    assert_eq!(
        kv.get("dups", "k").await.expect("get").as_deref(),
        Some(&b"last"[..])
    );

    let too_big = vec![0u8; LIMITS.max_value_bytes + 1];
    let bad: Vec<(&str, &[u8])> = vec![("ok-1", b"x"), ("bad", &too_big), ("ok-2", b"y")];
    let err = kv
        .set_many("atomic", &bad, None)
        .await
        .expect_err("one item too big");
    assert_matches!(err, Error::ValueTooLarge { .. });
    assert!(
        keys_of(kv, "atomic", "").await.is_empty(),
        "nothing of a refused batch is written"
    );
}

/// Keys are listed by prefix, completely, across many items.
pub async fn kv_keys_by_prefix(f: &Fixture) {
    let kv = &*f.kv;
    let mut users = HashSet::new();
    for i in 0..120 {
        let key = format!("user:{i}");
        kv.set("p", &key, b"v", None).await.expect("set");
        users.insert(key);
    }
    for key in ["session:a", "session:b", "use", "User:1", "user%", "user_"] {
        kv.set("p", key, b"v", None).await.expect("set");
    }
    assert_eq!(keys_of(kv, "p", "user:").await, users);
    assert_eq!(
        keys_of(kv, "p", "session:").await,
        HashSet::from(["session:a".into(), "session:b".into()])
    );
    // Wildcards of SQL LIKE are plain characters here.
    assert_eq!(
        keys_of(kv, "p", "user%").await,
        HashSet::from(["user%".into()])
    );
    assert_eq!(
        keys_of(kv, "p", "user_").await,
        HashSet::from(["user_".into()])
    );
    assert_eq!(keys_of(kv, "p", "").await.len(), 126);
    assert!(keys_of(kv, "p", "nothing").await.is_empty());
    assert!(keys_of(kv, "empty-namespace", "").await.is_empty());
}

/// A listing larger than any backend's page (SQL pages of 500-1000 keys, DynamoDB's 1 MB
/// Query pages over several shards) is complete, with and without a prefix.
pub async fn kv_keys_lists_large_namespaces(f: &Fixture) {
    let kv = &*f.kv;
    let keys: Vec<String> = (0..2100).map(|i| format!("big:{i:05}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    kv.set_many("large", &items, None).await.expect("set_many");
    kv.set_many(
        "large",
        &[("after", b"v"), ("big", b"v"), ("bif", b"v")],
        None,
    )
    .await
    .expect("set_many");
    let listed: Vec<String> = kv.keys("large", "big:").try_collect().await.expect("keys");
    assert_eq!(listed.len(), keys.len(), "no key twice, none missing");
    assert_eq!(
        listed.into_iter().collect::<HashSet<_>>(),
        keys.iter().cloned().collect()
    );
    assert_eq!(keys_of(kv, "large", "").await.len(), keys.len() + 3);
    assert_eq!(keys_of(kv, "large", "big").await.len(), keys.len() + 1);
    kv.clear("large").await.expect("clear");
    assert!(
        keys_of(kv, "large", "").await.is_empty(),
        "clear removes every page"
    );
}

/// clear(namespace) removes that namespace only.
pub async fn kv_clear_leaves_other_namespaces(f: &Fixture) {
    let kv = &*f.kv;
    for i in 0..30 {
        kv.set("a", &format!("k{i}"), b"a", None)
            .await
            .expect("set");
        kv.set("ab", &format!("k{i}"), b"ab", None)
            .await
            .expect("set");
    }
    kv.clear("a").await.expect("clear");
    assert!(keys_of(kv, "a", "").await.is_empty());
    assert_eq!(kv.get("a", "k1").await.expect("get"), None);
    assert_eq!(
        keys_of(kv, "ab", "").await.len(),
        30,
        "a namespace sharing a prefix survives"
    );
    assert_eq!(
        kv.get("ab", "k1").await.expect("get").as_deref(),
        Some(&b"ab"[..])
    );
    kv.clear("never-used")
        .await
        .expect("clearing an empty namespace is fine");
}

/// The values of the racing tasks whose write took: each task answers its value and what its
/// conditional write returned (`what` names the write).
async fn winners(
    tasks: Vec<tokio::task::JoinHandle<(String, storekit_core::Result<bool>)>>,
    what: &str,
) -> Vec<String> {
    let mut winners = Vec::new();
    for task in tasks {
        let (value, took) = task.await.expect("task");
        if took.expect(what) {
            winners.push(value);
        }
    }
    winners
}

/// Of 32 concurrent set_if_absent calls exactly one stores, and its value is kept.
pub async fn kv_set_if_absent_race(f: &Fixture) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let kv = f.kv.clone();
            tokio::spawn(async move {
                let value = format!("owner-{i}");
                let stored = kv
                    .set_if_absent("lock", "job", value.as_bytes(), None)
                    .await;
                (value, stored)
            })
        })
        .collect();
    let winners = winners(tasks, "set_if_absent").await;
    assert_eq!(winners.len(), 1);
    let stored = f.kv.get("lock", "job").await.expect("get").expect("stored");
    assert_eq!(stored, winners[0].as_bytes());
    assert!(
        !f.kv
            .set_if_absent("lock", "job", b"late", None)
            .await
            .expect("sia")
    );
}

/// 32 tasks write at once, to four keys they share and to keys of their own, with every kind
/// of write: each call still gets its own answer (a store that batches concurrent writes must
/// not hand one caller another's result), and no value lands under another key.
pub async fn kv_concurrent_writers_keep_their_own_outcomes(f: &Fixture) {
    const SHARED: usize = 4;
    const ROUNDS: usize = 20;
    let shared_value = |key: &str, task: usize, round: usize| {
        format!("{key}|task {task}|round {round}|{}", "x".repeat(200)).into_bytes()
    };
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let kv = f.kv.clone();
            tokio::spawn(async move {
                let own = format!("own-{task}");
                let own_batch = format!("own-batch-{task}");
                for round in 0..ROUNDS {
                    let shared = format!("shared-{}", round % SHARED);
                    let next = format!("shared-{}", (round + 1) % SHARED);
                    kv.set(
                        "writers",
                        &shared,
                        &shared_value(&shared, task, round),
                        None,
                    )
                    .await
                    .expect("set shared");
                    let mine = format!("task {task} round {round}");
                    kv.set("writers", &own, mine.as_bytes(), None)
                        .await
                        .expect("set own");
                    assert_eq!(
                        kv.get("writers", &own).await.expect("get own"),
                        Some(mine.clone().into_bytes()),
                        "a task's own key holds what it wrote"
                    );
                    assert!(kv.delete("writers", &own).await.expect("delete"));
                    assert!(!kv.delete("writers", &own).await.expect("delete again"));
                    assert!(
                        kv.set_if_absent("writers", &own, mine.as_bytes(), None)
                            .await
                            .expect("set_if_absent")
                    );
                    assert!(
                        !kv.set_if_absent("writers", &own, b"second", None)
                            .await
                            .expect("set_if_absent again")
                    );
                    assert!(
                        kv.compare_and_swap(
                            "writers",
                            &own,
                            Some(mine.as_bytes()),
                            b"swapped",
                            None
                        )
                        .await
                        .expect("compare_and_swap")
                    );
                    let next_value = shared_value(&next, task, round);
                    kv.set_many(
                        "writers",
                        &[(next.as_str(), &next_value[..]), (own_batch.as_str(), b"b")],
                        None,
                    )
                    .await
                    .expect("set_many");
                    kv.delete_many("writers", &[own_batch.as_str(), own.as_str()])
                        .await
                        .expect("delete_many");
                    assert!(!kv.contains("writers", &own).await.expect("contains"));
                    let read = kv.get("writers", &shared).await.expect("get shared");
                    let read = read.expect("a shared key is never deleted");
                    assert!(
                        read.starts_with(format!("{shared}|").as_bytes()),
                        "{shared} holds a value written for another key"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer failed");
    }
    let keys = keys_of(&*f.kv, "writers", "").await;
    let expected: HashSet<String> = (0..SHARED).map(|i| format!("shared-{i}")).collect();
    assert_eq!(keys, expected, "only the shared keys are left");
    for key in &expected {
        let value =
            f.kv.get("writers", key)
                .await
                .expect("get")
                .expect("present");
        assert!(value.starts_with(format!("{key}|task ").as_bytes()));
    }
}

/// compare_and_swap replaces only the expected value; of 32 racing swaps from one value exactly
/// one wins.
pub async fn kv_compare_and_swap_race(f: &Fixture) {
    let kv = &*f.kv;
    assert!(
        !kv.compare_and_swap("cas", "k", Some(b"x"), b"y", None)
            .await
            .expect("absent")
    );
    assert_eq!(kv.get("cas", "k").await.expect("get"), None);
    assert!(
        kv.compare_and_swap("cas", "k", None, b"v0", None)
            .await
            .expect("create")
    );
    assert!(
        !kv.compare_and_swap("cas", "k", None, b"v1", None)
            .await
            .expect("exists")
    );
    assert!(
        !kv.compare_and_swap("cas", "k", Some(b"v9"), b"v1", None)
            .await
            .expect("wrong")
    );
    assert_eq!(
        kv.get("cas", "k").await.expect("get").as_deref(),
        Some(&b"v0"[..])
    );

    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let kv = f.kv.clone();
            tokio::spawn(async move {
                let value = format!("v-{i}");
                let swapped = kv.compare_and_swap("cas", "k", Some(b"v0"), value.as_bytes(), None);
                (value.clone(), swapped.await)
            })
        })
        .collect();
    let winners = winners(tasks, "cas").await;
    assert_eq!(winners.len(), 1);
    let stored = kv.get("cas", "k").await.expect("get").expect("stored");
    assert_eq!(stored, winners[0].as_bytes());
}

/// 32 concurrent increments give 32 distinct results and a final 32; counters read back as
/// digits; non-numbers are refused; a new counter gets its TTL.
pub async fn kv_concurrent_increments(f: &Fixture) {
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let kv = f.kv.clone();
            tokio::spawn(async move { kv.increment("c", "hits", 1, None).await })
        })
        .collect();
    let mut results = HashSet::new();
    for task in tasks {
        results.insert(task.await.expect("task").expect("increment"));
    }
    assert_eq!(results, (1..=32).collect());
    let kv = &*f.kv;
    assert_eq!(
        kv.get("c", "hits").await.expect("get").as_deref(),
        Some(&b"32"[..])
    );
    assert_eq!(
        kv.increment("c", "hits", -40, None)
            .await
            .expect("negative"),
        -8
    );

    kv.set("c", "digits", b"41", None).await.expect("set");
    assert_eq!(
        kv.increment("c", "digits", 1, None)
            .await
            .expect("from digits"),
        42
    );
    kv.set("c", "text", b"abc", None).await.expect("set");
    let err = kv
        .increment("c", "text", 1, None)
        .await
        .expect_err("not a number");
    assert_matches!(err, Error::InvalidInput { .. });
    assert_eq!(
        kv.get("c", "text").await.expect("get").as_deref(),
        Some(&b"abc"[..])
    );
    kv.set("c", "max", i64::MAX.to_string().as_bytes(), None)
        .await
        .expect("set");
    let err = kv
        .increment("c", "max", 1, None)
        .await
        .expect_err("overflow");
    assert_matches!(err, Error::InvalidInput { .. });

    let window = Some(Duration::from_millis(300));
    assert_eq!(
        kv.increment("c", "window", 5, window).await.expect("new"),
        5
    );
    assert_eq!(
        kv.increment("c", "window", 5, window).await.expect("again"),
        10
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        kv.get("c", "window").await.expect("get"),
        None,
        "the counter expired"
    );
    assert_eq!(
        kv.increment("c", "window", 1, None).await.expect("restart"),
        1
    );
}

/// The same limits everywhere: empty and over-long keys and namespaces are `InvalidInput`; a
/// value just over the limit is `ValueTooLarge` and nothing is stored; one at it is stored whole.
pub async fn kv_limits_are_enforced(f: &Fixture) {
    let kv = &*f.kv;
    let err = kv.set("ns", "", b"v", None).await.expect_err("empty key");
    assert_matches!(err, Error::InvalidInput { what: "key", .. });
    let err = kv.get("", "k").await.expect_err("empty namespace");
    assert_matches!(
        err,
        Error::InvalidInput {
            what: "namespace",
            ..
        }
    );
    let long_key = "k".repeat(LIMITS.max_key_bytes + 1);
    let err = kv
        .set("ns", &long_key, b"v", None)
        .await
        .expect_err("long key");
    assert_matches!(err, Error::InvalidInput { what: "key", .. });
    let err = kv.get("ns", &long_key).await.expect_err("long key");
    assert_matches!(err, Error::InvalidInput { what: "key", .. });
    let err = kv.set("ns", "nul\0key", b"v", None).await.expect_err("NUL");
    assert_matches!(err, Error::InvalidInput { what: "key", .. });
    let long_ns = "n".repeat(LIMITS.max_namespace_bytes + 1);
    let err = kv
        .set(&long_ns, "k", b"v", None)
        .await
        .expect_err("long namespace");
    assert_matches!(
        err,
        Error::InvalidInput {
            what: "namespace",
            ..
        }
    );

    // Multi-byte characters count in bytes: 128 × 4 bytes is exactly the limit.
    let widest_key = "🔑".repeat(LIMITS.max_key_bytes / 4);
    let widest_ns = "n".repeat(LIMITS.max_namespace_bytes);
    let at_limit = vec![0xabu8; LIMITS.max_value_bytes];
    kv.set(&widest_ns, &widest_key, &at_limit, None)
        .await
        .expect("largest item");
    let read = kv
        .get(&widest_ns, &widest_key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read.len(), LIMITS.max_value_bytes, "never truncated");
    assert!(read == at_limit);

    let over = vec![1u8; LIMITS.max_value_bytes + 1];
    let err = kv
        .set("ns", "big", &over, None)
        .await
        .expect_err("too large");
    let expected_size = LIMITS.max_value_bytes + 1;
    assert_matches!(
        err,
        Error::ValueTooLarge { size, limit, .. } if size == expected_size && limit == LIMITS.max_value_bytes
    );
    let err = kv
        .set_if_absent("ns", "big", &over, None)
        .await
        .expect_err("too large");
    assert_matches!(err, Error::ValueTooLarge { .. });
    let err = kv
        .compare_and_swap("ns", "big", None, &over, None)
        .await
        .expect_err("too large");
    assert_matches!(err, Error::ValueTooLarge { .. });
    assert_eq!(
        kv.get("ns", "big").await.expect("get"),
        None,
        "nothing stored"
    );
    assert!(
        !kv.contains("ns", "").await.is_ok_and(|found| found),
        "empty key is never found"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    name: String,
    price_cents: u64,
    tags: Vec<String>,
}

/// Typed JSON values through the extension trait, on `dyn KvStore`.
pub async fn kv_typed_json(f: &Fixture) {
    let kv = &*f.kv;
    let product = Product {
        name: "Café crème".into(),
        price_cents: 450,
        tags: vec!["hot".into()],
    };
    kv.set_json("products", "p1", &product, None)
        .await
        .expect("set_json");
    let read: Option<Product> = kv.get_json("products", "p1").await.expect("get_json");
    assert_eq!(read, Some(product));
    kv.set("products", "junk", b"not json", None)
        .await
        .expect("set");
    let err = kv
        .get_json::<Product>("products", "junk")
        .await
        .expect_err("not json");
    assert_matches!(err, Error::InvalidInput { what: "value", .. });
}

/// Stores `value` with `set_json` and checks every read gives it back: `get_json` equal, and
/// `get` JSON that decodes to it. Returns what `get` read.
async fn json_round_trip<T>(kv: &dyn KvStore, key: &str, value: &T) -> Vec<u8>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Sync,
{
    kv.set_json("json", key, value, None)
        .await
        .unwrap_or_else(|e| panic!("set_json {key}: {e:?}"));
    let read: Option<T> = kv.get_json("json", key).await.expect("get_json");
    assert_eq!(read.as_ref(), Some(value), "get_json {key}");
    let bytes = kv.get("json", key).await.expect("get").expect("stored");
    let decoded: T = serde_json::from_slice(&bytes).expect("get returns JSON");
    assert_eq!(&decoded, value, "get {key}");
    let many = kv.get_many("json", &[key]).await.expect("get_many");
    assert_eq!(many, [Some(bytes.clone())], "get_many {key}");
    bytes
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    // Not in sorted order, and a float with an integral value: both may read back otherwise
    // than `serde_json` wrote them (DynamoDB keeps a document, not its text).
    zone: String,
    celsius: f64,
    at: Option<u64>,
    flags: Vec<bool>,
}

/// JSON values of every type written with `set_json` read back equal with `get_json`, and
/// `get` (and `get_many`) returns their JSON. A JSON value whose object keys are in sorted
/// order and which holds no float with an integral value (what `serde_json::Value` writes)
/// reads back byte for byte as `serde_json::to_vec` wrote it, on every backend.
pub async fn kv_json_values_of_every_type_round_trip(f: &Fixture) {
    use serde_json::{Value, json};
    let kv = &*f.kv;
    let values: Vec<(&str, Value)> = vec![
        (
            "object",
            json!({"name": "Café crème", "n": -3, "big": u64::MAX, "small": i64::MIN,
                   "f": 0.1, "e": 1.5e-7, "huge": 1e20, "yes": true, "no": false, "none": null,
                   "list": [1, "two", [3.25], {"four": [null]}], "empty": {}, "nothing": [],
                   "text": "quote \" backslash \\ tab \t nul-free \u{1F511}"}),
        ),
        ("array", json!([{"a": 1}, [], "x", 2.5, null, true])),
        ("string", json!("just text, ключ")),
        ("empty-string", json!("")),
        ("integer", json!(42)),
        ("negative", json!(-7)),
        ("float", json!(-0.5)),
        ("true", json!(true)),
        ("null", Value::Null),
        ("empty-object", json!({})),
        ("empty-array", json!([])),
        ("deep", json!({"a": {"b": {"c": {"d": [[[{"e": "f"}]]]}}}})),
    ];
    for (key, value) in &values {
        let bytes = json_round_trip(kv, key, value).await;
        let written = serde_json::to_vec(value).expect("to_vec");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&written),
            "{key} reads back as written"
        );
    }

    let reading = Reading {
        zone: "north".into(),
        celsius: 21.0,
        at: None,
        flags: vec![true, false],
    };
    json_round_trip(kv, "struct", &reading).await;
    json_round_trip(kv, "integral-float", &2.0f64).await;
    json_round_trip(kv, "unit-list", &vec![(); 3]).await;
    json_round_trip(
        kv,
        "map",
        &std::collections::BTreeMap::from([("k".to_owned(), 1u8), ("j".to_owned(), 2)]),
    )
    .await;
    json_round_trip(kv, "option", &None::<String>).await;
}

/// Values DynamoDB cannot keep as a document (numbers outside its range, nesting past its
/// limit, empty or NUL-holding keys and strings, a document larger laid out than as text)
/// are still accepted by `set_json` and read back unchanged, byte for byte, on every backend;
/// the value limit counts the JSON text everywhere.
pub async fn kv_json_values_no_document_can_hold_round_trip(f: &Fixture) {
    use serde_json::{Value, json};
    let kv = &*f.kv;
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let cases: Vec<(&str, Value)> = vec![
        ("huge", json!(1e300)),
        ("tiny", json!(-1e-200)),
        ("subnormal", json!(5e-324)),
        ("max", json!(f64::MAX)),
        ("nested-huge", json!({"ok": 1, "big": [1e200]})),
        ("nested-tiny", json!([{"x": 1e-131}])),
        ("deep", deep),
        ("empty-key", json!({"": 1})),
        ("nul", json!({"a": "x\u{0}y"})),
        ("nul-key", json!({"a\u{0}": true})),
    ];
    for (key, value) in &cases {
        let bytes = json_round_trip(kv, key, value).await;
        assert_eq!(bytes, serde_json::to_vec(value).expect("to_vec"), "{key}");
    }
    // A top-level float with an integral value reads back as written, and can be swapped.
    let bytes = json_round_trip(kv, "two", &2.0f64).await;
    assert_eq!(bytes, b"2.0");
    assert!(
        kv.compare_and_swap("json", "two", Some(b"2.0"), b"3", None)
            .await
            .expect("swap")
    );

    // 199,999 zeros: 399,999 bytes of JSON, within the limit; as a DynamoDB list, more than
    // an item holds. One more than 200,000 is over the limit on every backend.
    let limit = LIMITS.max_value_bytes;
    let zeros = vec![0u8; (limit - 1) / 2];
    assert!(serde_json::to_vec(&zeros).expect("to_vec").len() <= limit);
    json_round_trip(kv, "zeros", &zeros).await;
    let over = vec![0u8; limit / 2 + 1];
    let err = kv
        .set_json("json", "over", &over, None)
        .await
        .expect_err("over the limit");
    assert_matches!(err, Error::ValueTooLarge { .. });
    assert_eq!(kv.get("json", "over").await.expect("get"), None);
}

/// One key written as JSON, then as bytes, then as JSON again reads back each time as last
/// written; swaps match a JSON value by its JSON as written or as read, counters and TTLs
/// work on JSON values as on bytes.
pub async fn kv_json_and_bytes_take_turns_at_one_key(f: &Fixture) {
    use serde_json::json;
    let kv = &*f.kv;
    let first = json!({"step": 1, "tags": ["a"]});
    let second = json!({"step": 2, "tags": []});
    kv.set_json("turns", "k", &first, None)
        .await
        .expect("set_json");
    kv.set("turns", "k", b"raw \xff bytes", None)
        .await
        .expect("set");
    assert_eq!(
        kv.get("turns", "k").await.expect("get").as_deref(),
        Some(&b"raw \xff bytes"[..])
    );
    let err = kv
        .get_json::<serde_json::Value>("turns", "k")
        .await
        .expect_err("bytes are not JSON");
    assert_matches!(err, Error::InvalidInput { what: "value", .. });
    kv.set_json("turns", "k", &second, None)
        .await
        .expect("set_json again");
    assert_eq!(
        kv.get_json::<serde_json::Value>("turns", "k")
            .await
            .expect("get_json"),
        Some(second.clone())
    );

    // A swap against the JSON of another value fails and changes nothing; against the JSON
    // `serde_json` writes for the stored value, it succeeds.
    let other = serde_json::to_vec(&first).expect("to_vec");
    assert!(
        !kv.compare_and_swap("turns", "k", Some(&other), b"no", None)
            .await
            .expect("swap")
    );
    let written = serde_json::to_vec(&second).expect("to_vec");
    assert!(
        kv.compare_and_swap("turns", "k", Some(&written), b"swapped", None)
            .await
            .expect("swap")
    );
    assert_eq!(
        kv.get("turns", "k").await.expect("get").as_deref(),
        Some(&b"swapped"[..])
    );
    // A struct's fields in declaration order, swapped against what `get` read.
    let reading = Reading {
        zone: "z".into(),
        celsius: 1.5,
        at: Some(7),
        flags: vec![],
    };
    kv.set_json("turns", "k", &reading, None)
        .await
        .expect("set_json struct");
    let read = kv.get("turns", "k").await.expect("get").expect("stored");
    assert!(
        kv.compare_and_swap("turns", "k", Some(&read), b"again", None)
            .await
            .expect("swap against the read")
    );
    assert!(
        !kv.set_if_absent("turns", "k", b"x", None)
            .await
            .expect("set_if_absent")
    );

    // A JSON integer is a counter, as its digits are.
    kv.set_json("turns", "n", &41, None)
        .await
        .expect("set_json");
    assert_eq!(kv.increment("turns", "n", 1, None).await.expect("incr"), 42);
    assert_eq!(
        kv.get_json::<i64>("turns", "n").await.expect("get_json"),
        Some(42)
    );
    kv.set_json("turns", "n", &second, None)
        .await
        .expect("set_json");
    let err = kv
        .increment("turns", "n", 1, None)
        .await
        .expect_err("a document is no counter");
    assert_matches!(err, Error::InvalidInput { .. });

    // TTLs: set with one, changed and dropped without rewriting the value.
    let hour = Duration::from_secs(3600);
    kv.set_json("turns", "t", &first, Some(hour))
        .await
        .expect("set_json with ttl");
    let timed = kv
        .get_with_ttl("turns", "t")
        .await
        .expect("get_with_ttl")
        .expect("live");
    assert_matches!(timed.ttl, Ttl::Remaining(left) if left <= hour, "{timed:?}");
    let value: serde_json::Value = serde_json::from_slice(&timed.value).expect("JSON");
    assert_eq!(value, first);
    assert!(kv.persist("turns", "t").await.expect("persist"));
    assert_eq!(
        kv.get_json::<serde_json::Value>("turns", "t")
            .await
            .expect("get_json"),
        Some(first.clone())
    );
    kv.set_json("turns", "t", &first, Some(Duration::from_millis(1)))
        .await
        .expect("set_json short ttl");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        kv.get_json::<serde_json::Value>("turns", "t")
            .await
            .expect("get_json"),
        None,
        "expired"
    );
}

/// 8 tasks writing the same 200 keys in batches, each in its own order, with deletes of half
/// of them between: every call succeeds (no deadlock surfaces, none waits for a deadlock
/// detector), and every key left holds a value one of the tasks wrote.
pub async fn kv_overlapping_batches_in_any_order(f: &Fixture) {
    const TASKS: u64 = 8;
    const ROUNDS: u64 = 12;
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i:03}")).collect();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (kv, keys) = (f.kv.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // A different order per task and round: a rotation and, for odd tasks, reversed.
                let mut order: Vec<&str> = keys.iter().map(String::as_str).collect();
                order.rotate_left(((task * 37 + round * 11) % 200) as usize);
                if task % 2 == 1 {
                    order.reverse();
                }
                let value = format!("t{task}r{round}");
                let items: Vec<(&str, &[u8])> =
                    order.iter().map(|k| (*k, value.as_bytes())).collect();
                kv.set_many("overlap", &items, None)
                    .await
                    .expect("set_many");
                if round % 3 == 2 {
                    kv.delete_many("overlap", &order[..100])
                        .await
                        .expect("delete_many");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a task panicked");
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for value in
        f.kv.get_many("overlap", &refs)
            .await
            .expect("get_many")
            .into_iter()
            .flatten()
    {
        let value = String::from_utf8(value).expect("utf-8");
        assert!(value.starts_with('t') && value.contains('r'), "{value}");
    }
}

/// Sleeps until `at`.
async fn sleep_until(at: std::time::Instant) {
    tokio::time::sleep(at.saturating_duration_since(std::time::Instant::now())).await;
}

/// `expire` and `persist` change only the deadline of a live item, and `get_with_ttl` reads
/// it back; an absent or expired item is left alone (false), never brought back.
pub async fn kv_expire_and_persist_change_only_the_ttl(f: &Fixture) {
    let kv = &*f.kv;
    let hour = Duration::from_secs(3600);
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    kv.set("exp", "k", &binary, None).await.expect("set");
    let live = async || {
        let read = kv.get_with_ttl("exp", "k").await.expect("read");
        read.expect("live")
    };
    let read = live().await;
    assert_eq!(
        (read.value.as_slice(), read.ttl),
        (binary.as_slice(), Ttl::Never)
    );

    assert!(kv.expire("exp", "k", hour).await.expect("expire"));
    let read = live().await;
    assert_eq!(read.value, binary, "the value is untouched");
    match read.ttl {
        Ttl::Remaining(left) => assert!(
            left <= hour && left > hour - Duration::from_secs(60),
            "{left:?} left of an hour"
        ),
        other => panic!("expected an hour left, got {other:?}"),
    }
    assert!(kv.persist("exp", "k").await.expect("persist"));
    let read = live().await;
    assert_eq!(
        (read.value.as_slice(), read.ttl),
        (binary.as_slice(), Ttl::Never)
    );
    assert!(
        kv.persist("exp", "k").await.expect("persist twice"),
        "still live"
    );

    for missing in ["missing", "never"] {
        assert!(!kv.expire("exp", missing, hour).await.expect("expire"));
        assert!(!kv.persist("exp", missing).await.expect("persist"));
        assert_eq!(kv.get_with_ttl("exp", missing).await.expect("read"), None);
        assert!(
            !kv.contains("exp", missing).await.expect("contains"),
            "nothing created"
        );
    }

    // A counter keeps counting under its new deadline, and reads back as its digits.
    assert_eq!(kv.increment("exp", "n", 5, None).await.expect("incr"), 5);
    assert!(kv.expire("exp", "n", hour).await.expect("expire counter"));
    assert_eq!(kv.increment("exp", "n", 1, None).await.expect("incr"), 6);
    let read = kv
        .get_with_ttl("exp", "n")
        .await
        .expect("read")
        .expect("live");
    assert_eq!(read.value, b"6");
    assert_matches!(read.ttl, Ttl::Remaining(_));

    // Shortened, an item expires at its new deadline, and then stays gone.
    kv.set("exp", "short", b"s", Some(hour)).await.expect("set");
    kv.set("exp", "kept", b"k", Some(Duration::from_millis(400)))
        .await
        .expect("set");
    let started = std::time::Instant::now();
    assert!(
        kv.expire("exp", "short", Duration::from_millis(400))
            .await
            .expect("expire")
    );
    assert!(
        kv.persist("exp", "kept")
            .await
            .expect("persist before its deadline")
    );
    sleep_until(started + Duration::from_millis(900)).await;
    assert_eq!(kv.get("exp", "short").await.expect("get"), None);
    assert_eq!(kv.get_with_ttl("exp", "short").await.expect("read"), None);
    assert!(
        !kv.expire("exp", "short", hour)
            .await
            .expect("expire expired")
    );
    assert!(!kv.persist("exp", "short").await.expect("persist expired"));
    assert_eq!(
        kv.get("exp", "short").await.expect("get"),
        None,
        "never brought back"
    );
    assert_eq!(
        kv.get("exp", "kept").await.expect("get").as_deref(),
        Some(&b"k"[..])
    );

    let err = kv
        .expire("exp", "k", Duration::ZERO)
        .await
        .expect_err("zero ttl");
    assert_matches!(err, Error::InvalidInput { what: "ttl", .. });
    let err = kv.persist("exp", "").await.expect_err("empty key");
    assert_matches!(err, Error::InvalidInput { .. });
    let read = live().await;
    assert_eq!(read.ttl, Ttl::Never, "a refused call changes nothing");
}

/// `get_stale` reads an item that expired less than `max_stale` ago, within what the store
/// keeps (`keep_expired`), which no other read returns and no purge deletes; a longer
/// `max_stale` is refused rather than answered by chance.
pub async fn kv_get_stale_reads_expired_items_for_the_kept_time(f: &Fixture) {
    let kv = &*f.kv;
    let keep = kv.keep_expired();
    let ttl = Duration::from_millis(300);
    kv.set("stale", "forever", b"f", None).await.expect("set");
    kv.set("stale", "k", b"v", Some(ttl)).await.expect("set");
    let started = std::time::Instant::now();
    let live = kv
        .get_stale("stale", "forever", keep)
        .await
        .expect("stale read");
    assert_eq!(live.map(|v| v.ttl), Some(Ttl::Never));
    assert_eq!(
        kv.get_stale("stale", "missing", keep).await.expect("read"),
        None
    );
    let err = kv
        .get_stale("stale", "k", keep + Duration::from_secs(1))
        .await
        .expect_err("longer than kept");
    assert_matches!(
        err,
        Error::InvalidInput {
            what: "max_stale",
            ..
        }
    );
    let expired_at = started + ttl + Duration::from_millis(400);
    sleep_until(expired_at).await;
    assert_eq!(kv.get("stale", "k").await.expect("get"), None);
    assert_eq!(kv.get_with_ttl("stale", "k").await.expect("read"), None);
    assert_eq!(
        kv.get_stale("stale", "k", Duration::ZERO)
            .await
            .expect("read"),
        None
    );
    if keep.is_zero() {
        // Nothing is kept past its deadline, so no stale read can be promised.
        return;
    }
    assert!(
        keep >= Duration::from_secs(1),
        "the suite's fixtures keep expired items long enough to read them ({keep:?})"
    );
    assert!(!kv.contains("stale", "k").await.expect("contains"));
    assert_eq!(
        kv.get_many("stale", &["k"]).await.expect("get_many"),
        vec![None]
    );
    assert_eq!(
        keys_of(kv, "stale", "").await,
        HashSet::from(["forever".to_owned()])
    );

    let stale = kv
        .get_stale("stale", "k", keep)
        .await
        .expect("stale read")
        .expect("kept");
    assert_eq!(stale.value, b"v");
    match stale.ttl {
        Ttl::Expired(ago) => assert!(ago >= Duration::from_millis(300) && ago < keep, "{ago:?}"),
        other => panic!("expected an expired value, got {other:?}"),
    }
    assert_eq!(
        kv.get_stale("stale", "k", Duration::from_millis(100))
            .await
            .expect("read"),
        None,
        "it expired more than 100 ms ago"
    );
    assert_eq!(
        kv.purge_expired().await.expect("purge"),
        0,
        "kept items are not purged"
    );
    assert!(
        kv.get_stale("stale", "k", keep)
            .await
            .expect("read")
            .is_some()
    );

    sleep_until(expired_at + keep).await;
    assert_eq!(kv.get_stale("stale", "k", keep).await.expect("read"), None);
    let purged = kv.purge_expired().await.expect("purge");
    assert_eq!(
        purged,
        u64::from(f.capabilities.purge_on_demand),
        "purged {purged}"
    );
    assert_eq!(
        kv.get("stale", "forever").await.expect("get").as_deref(),
        Some(&b"f"[..])
    );
}
