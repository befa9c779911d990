//! 32 tasks at once on the same records and keys: record batches over overlapping keys,
//! inserts over an expired record and its unique values, and kv TTL changes on one key. Each
//! case accounts for every answer and checks what the store holds afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use storekit_core::table::{Document, KeyDef, KeyValue, RecordKey, TableSchema, TableStore};
use storekit_core::{Error, Ttl};

use crate::Fixture;
use crate::tables::{doc, get};

const TASKS: usize = 32;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// `overlap`: a text id and no unique index, so that DynamoDB sends `BatchWriteItem`s.
fn overlap() -> TableSchema {
    TableSchema::builder("overlap", KeyDef::text("id"))
        .build()
        .expect("valid schema")
}

const KEYS: usize = 40;
const WIDTH: usize = 12;

fn key_name(i: usize) -> String {
    format!("k{i:02}")
}

/// The keys task `task` names in round `round`: 12 consecutive keys of 40 (wrapping), so that
/// every key is in several tasks' batches.
fn window(task: usize, round: usize) -> Vec<String> {
    let start = (task * 5 + round * 11) % KEYS;
    (start..start + WIDTH).map(|j| key_name(j % KEYS)).collect()
}

/// A batch's record for `id`: its stamp in three places, so that a record mixing two batches
/// shows.
fn stamped(id: &str, stamp: u64) -> Document {
    doc(json!({"id": id, "stamp": stamp, "copy": stamp, "list": [stamp, {"again": stamp}]}))
}

/// The stamp of a record, if every copy of it agrees.
fn whole_stamp(document: &Document) -> Option<u64> {
    let stamp = document.get("stamp")?.as_u64()?;
    let copies = [
        document.get("copy").and_then(serde_json::Value::as_u64),
        document
            .get("list")
            .and_then(|l| l.get(0))
            .and_then(serde_json::Value::as_u64),
        document
            .get("list")
            .and_then(|l| l.get(1))
            .and_then(|m| m.get("again"))
            .and_then(serde_json::Value::as_u64),
    ];
    (copies.iter().all(|c| *c == Some(stamp)) && document.len() == 4).then_some(stamp)
}

/// What the tasks of one phase did: per stamp, the keys of its batch and whether it succeeded.
#[derive(Default)]
struct Ledger {
    written: BTreeMap<u64, (Vec<String>, bool)>,
    deletes: usize,
    lost: usize,
}

/// One task's batch: a `put_many` of its window (or a `delete_many`, when `delete`). A batch
/// may fail only with `Unavailable` (the database gave up under contention, as the contract
/// allows); the records `put_many` returns are the batch's, in order, at versions from 1.
async fn batch(
    store: Arc<dyn TableStore>,
    schema: TableSchema,
    ledger: Arc<Mutex<Ledger>>,
    task: usize,
    round: usize,
    delete: bool,
) {
    let keys = window(task, round);
    let stamp = (round * 1000 + task) as u64;
    let result = if delete {
        let keys: Vec<RecordKey> = keys.iter().map(|k| RecordKey::new(k.as_str())).collect();
        store.delete_many(&schema, &keys).await.map(|()| Vec::new())
    } else {
        let documents = keys.iter().map(|k| stamped(k, stamp)).collect();
        store.put_many(&schema, documents).await
    };
    // Checked before the ledger is locked, so that a failure leaves it usable.
    let written = match result {
        Ok(records) if !delete => {
            let got: Vec<(String, Option<u64>)> = records
                .iter()
                .map(|r| {
                    let id = r.document["id"].as_str().unwrap_or_default().to_owned();
                    (id, whole_stamp(&r.document).filter(|_| r.version >= 1))
                })
                .collect();
            let want: Vec<(String, Option<u64>)> =
                keys.iter().map(|k| (k.clone(), Some(stamp))).collect();
            assert_eq!(got, want, "task {task} round {round}: put_many's records");
            true
        }
        Ok(_) => true,
        Err(Error::Unavailable { .. }) => false,
        Err(other) => panic!("task {task} round {round}: {other:?}"),
    };
    let mut ledger = ledger.lock().expect("ledger");
    match (delete, written) {
        (true, true) => ledger.deletes += 1,
        (true, false) => ledger.lost += 1,
        (false, ok) => {
            ledger.lost += usize::from(!ok);
            ledger.written.insert(stamp, (keys, ok));
        }
    }
}

async fn run_phase(
    f: &Fixture,
    schema: &TableSchema,
    rounds: std::ops::Range<usize>,
    mixed: bool,
) -> Ledger {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let tasks = (0..TASKS).map(|task| {
        let (store, schema, ledger) = (f.tables().clone(), schema.clone(), ledger.clone());
        let rounds = rounds.clone();
        tokio::spawn(async move {
            for round in rounds {
                let delete = mixed && (task + round) % 2 == 1;
                batch(
                    store.clone(),
                    schema.clone(),
                    ledger.clone(),
                    task,
                    round,
                    delete,
                )
                .await;
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    Arc::try_unwrap(ledger)
        .ok()
        .expect("every task ended")
        .into_inner()
        .expect("ledger")
}

/// 32 tasks `put_many` 12 of 40 keys each, four rounds, then `put_many` and `delete_many` mixed
/// over the same keys: every record ends whole, from one batch that wrote it (one that
/// succeeded, where batches are atomic), or deleted; its version counts the batches that
/// wrote it (exactly, where batches are atomic; at most, on DynamoDB, where a batch's read of
/// the versions and its write are two requests). No answer but the records or `Unavailable`.
pub async fn overlapping_batches_leave_whole_records(f: &Fixture) {
    let schema = overlap();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let atomic = f.capabilities.atomic_record_batches;
    let keys: Vec<RecordKey> = (0..KEYS).map(|i| RecordKey::new(key_name(i))).collect();

    let first = run_phase(f, &schema, 0..4, false).await;
    assert!(
        first.written.values().filter(|(_, ok)| *ok).count() >= TASKS,
        "most batches succeed: {} of {} lost",
        first.lost,
        TASKS * 4
    );
    let records = store.get_many(&schema, &keys).await.expect("get_many");
    for (i, record) in records.iter().enumerate() {
        let name = key_name(i);
        let batches = |succeeded: bool| {
            first
                .written
                .iter()
                .filter(|(_, (keys, ok))| keys.contains(&name) && (*ok || !succeeded))
                .map(|(stamp, _)| *stamp)
                .collect::<BTreeSet<u64>>()
        };
        let (wrote, tried) = (batches(true), batches(false));
        let record = record
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: written by {wrote:?}, and missing"));
        let stamp = whole_stamp(&record.document)
            .unwrap_or_else(|| panic!("{name}: not one batch's record: {:?}", record.document));
        let from = if atomic { &wrote } else { &tried };
        assert!(from.contains(&stamp), "{name}: stamp {stamp} is no batch's");
        if atomic {
            assert_eq!(
                record.version,
                wrote.len() as u64,
                "{name}: one version per batch"
            );
        } else {
            assert!(
                (1..=tried.len() as u64).contains(&record.version),
                "{name}: version {} after {} batches",
                record.version,
                tried.len()
            );
        }
    }

    let second = run_phase(f, &schema, 4..8, true).await;
    assert!(second.deletes > 0, "some delete_many succeed");
    let records = store.get_many(&schema, &keys).await.expect("get_many");
    let mut present = 0;
    for (i, record) in records.iter().enumerate() {
        let name = key_name(i);
        let Some(record) = record else { continue };
        present += 1;
        let stamp = whole_stamp(&record.document)
            .unwrap_or_else(|| panic!("{name}: not one batch's record: {:?}", record.document));
        let known = [&first, &second].iter().any(|ledger| {
            ledger
                .written
                .get(&stamp)
                .is_some_and(|(keys, ok)| keys.contains(&name) && (*ok || !atomic))
        });
        assert!(known, "{name}: stamp {stamp} is no batch's");
        let puts = [&first, &second]
            .iter()
            .flat_map(|ledger| ledger.written.values())
            .filter(|(keys, _)| keys.contains(&name))
            .count() as u64;
        assert!(
            (1..=puts).contains(&record.version),
            "{name}: version {} after at most {puts} puts",
            record.version
        );
    }
    assert_eq!(
        store.count(&schema).await.expect("count"),
        present,
        "count agrees with the records read"
    );

    // What is left is ordinary: deleted at once, then written again from version 1.
    store
        .delete_many(&schema, &keys)
        .await
        .expect("delete_many");
    assert_eq!(store.count(&schema).await.expect("count"), 0);
    let again = store
        .put_many(
            &schema,
            (0..KEYS).map(|i| stamped(&key_name(i), 9)).collect(),
        )
        .await
        .expect("put_many");
    assert!(
        again.iter().all(|r| r.version == 1),
        "deleted records leave no version"
    );
}

/// `lapsed`: records expiring at `expires_at`, with a unique `token`.
fn lapsed() -> TableSchema {
    TableSchema::builder("lapsed", KeyDef::text("id"))
        .unique("token", [KeyDef::text("token")])
        .ttl("expires_at")
        .build()
        .expect("valid schema")
}

/// Which of the tasks' inserts won; every other must be `AlreadyExists { what }`.
async fn one_winner(
    tasks: Vec<tokio::task::JoinHandle<Result<storekit_core::table::Record, Error>>>,
    what: &str,
) -> usize {
    let mut winners = Vec::new();
    for (task, joined) in tasks.into_iter().enumerate() {
        match joined.await.expect("task") {
            Ok(record) => {
                assert_eq!(record.version, 1, "task {task}: a new record");
                winners.push(task);
            }
            Err(Error::AlreadyExists { what: got }) if got == what => {}
            Err(other) => panic!("task {task}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one insert wins: {winners:?}");
    winners[0]
}

/// 32 tasks insert the key of a record that has expired, each with its own unique value:
/// exactly one wins, the expired record's unique value is free and the losers' values are
/// held by nobody. Then 32 tasks insert 32 keys all taking the unique value another expired
/// record holds: exactly one wins, and it alone holds it.
pub async fn inserts_over_an_expired_record_have_one_winner(f: &Fixture) {
    let schema = lapsed();
    let store = f.tables().clone();
    store.ensure_table(&schema).await.expect("ensure_table");
    let past = now() - 10.0;
    let old = json!({"id": "one", "token": "old", "expires_at": past});
    store.insert(&schema, doc(old)).await.expect("insert");
    let other = json!({"id": "two", "token": "shared", "expires_at": past});
    store.insert(&schema, doc(other)).await.expect("insert");
    let token = |task: usize| format!("new{task}");
    let holder = async |store: &Arc<dyn TableStore>, token: &str| {
        store
            .get_by_unique(&schema, "token", &[KeyValue::from(token)])
            .await
            .expect("get_by_unique")
            .map(|r| r.key)
    };

    let tasks = (0..TASKS)
        .map(|task| {
            let (store, schema) = (store.clone(), schema.clone());
            let record = json!({"id": "one", "token": token(task), "by": task});
            tokio::spawn(async move { store.insert(&schema, doc(record)).await })
        })
        .collect();
    let winner = one_winner(tasks, "record").await;
    let stored = get(&*store, &schema, &RecordKey::new("one"))
        .await
        .expect("the winner's record");
    assert_eq!(
        (stored.version, stored.document["by"].clone()),
        (1, json!(winner))
    );
    assert_eq!(
        holder(&store, "old").await,
        None,
        "the expired value is free"
    );
    for task in 0..TASKS {
        let expected = (task == winner).then(|| RecordKey::new("one"));
        assert_eq!(
            holder(&store, &token(task)).await,
            expected,
            "task {task}'s value"
        );
    }
    let reuse = json!({"id": "three", "token": "old"});
    store
        .insert(&schema, doc(reuse))
        .await
        .expect("the expired record's value is free");
    let taken = json!({"id": "four", "token": token(winner)});
    assert_matches!(
        store.insert(&schema, doc(taken)).await,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );

    let tasks = (0..TASKS)
        .map(|task| {
            let (store, schema) = (store.clone(), schema.clone());
            let record = json!({"id": format!("r{task}"), "token": "shared"});
            tokio::spawn(async move { store.insert(&schema, doc(record)).await })
        })
        .collect();
    let winner = one_winner(tasks, "unique value").await;
    let winner_key = RecordKey::new(format!("r{winner}"));
    assert_eq!(holder(&store, "shared").await, Some(winner_key));
    let keys: Vec<RecordKey> = (0..TASKS)
        .map(|t| RecordKey::new(format!("r{t}")))
        .collect();
    let written: Vec<usize> = store
        .get_many(&schema, &keys)
        .await
        .expect("get_many")
        .iter()
        .enumerate()
        .filter_map(|(task, r)| r.as_ref().map(|_| task))
        .collect();
    assert_eq!(written, [winner], "no loser's record is written");
    assert_eq!(get(&*store, &schema, &RecordKey::new("two")).await, None);
    assert_eq!(store.count(&schema).await.expect("count"), 3);
}

/// Kv TTL changes by 32 tasks on one key. While it lives: 32 tasks each increment it and set
/// or drop its TTL ten times; no increment is lost (a TTL change never rewrites the value),
/// every TTL change answers true, and the TTL left is one a task gave. Once it has expired:
/// 32 TTL changes and 32 reads race, every change answers false, nothing reads it, and it is
/// still what `get_stale` finds (no change revived or deleted it). Then 16 `set_if_absent`s
/// race 16 TTL changes on it: one write wins, and a TTL change answers true only if it ended
/// after that write began.
pub async fn kv_ttl_changes_on_one_key_race_cleanly(f: &Fixture) {
    let ns = "ttlrace";
    f.kv.set(ns, "c", b"0", None).await.expect("set");
    let tasks = (0..TASKS).map(|task| {
        let kv = f.kv.clone();
        tokio::spawn(async move {
            for i in 0..10 {
                kv.increment(ns, "c", 1, None).await.expect("increment");
                let ttl = ((task + i) % 3 != 0).then(|| Duration::from_secs(600 + task as u64));
                let live = kv.set_ttl(ns, "c", ttl).await.expect("set_ttl");
                assert!(live, "task {task}: the counter lives");
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    let timed =
        f.kv.get_with_ttl(ns, "c")
            .await
            .expect("get_with_ttl")
            .expect("the counter");
    assert_eq!(timed.value, b"320", "no increment lost");
    match timed.ttl {
        Ttl::Never => {}
        Ttl::Remaining(left) => assert!(
            left > Duration::from_secs(540) && left <= Duration::from_secs(600 + TASKS as u64),
            "{left:?} is no TTL a task gave"
        ),
        Ttl::Expired(_) => panic!("a live read returned an expired item"),
    }

    // Expired: no TTL change brings it back or removes it.
    f.kv.set(ns, "brief", b"v", Some(Duration::from_millis(800)))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tasks = (0..TASKS).map(|task| {
        let kv = f.kv.clone();
        tokio::spawn(async move {
            if task % 2 == 0 {
                let changed = kv
                    .set_ttl(ns, "brief", Some(Duration::from_secs(3600)))
                    .await
                    .expect("set_ttl");
                assert!(!changed, "task {task}: an expired item was given a TTL");
            } else {
                assert_eq!(kv.get(ns, "brief").await.expect("get"), None, "task {task}");
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    assert_eq!(f.kv.get(ns, "brief").await.expect("get"), None);
    // The suite's fixtures keep expired items for `KEEP_EXPIRED` (2 s): it expired ~1 s ago.
    if f.kv.keep_expired() >= crate::KEEP_EXPIRED {
        let stale =
            f.kv.get_stale(ns, "brief", crate::KEEP_EXPIRED)
                .await
                .expect("get_stale")
                .expect("still kept, as expired");
        assert_eq!(stale.value, b"v");
        assert_matches!(stale.ttl, Ttl::Expired(_));
    }

    // Expired, and written again by one of 16 while 16 change its TTL.
    let start = Instant::now();
    let tasks = (0..TASKS).map(|task| {
        let kv = f.kv.clone();
        tokio::spawn(async move {
            let began = start.elapsed();
            let answer = if task % 2 == 0 {
                kv.set_if_absent(
                    ns,
                    "brief",
                    format!("t{task}").as_bytes(),
                    Some(Duration::from_secs(60)),
                )
                .await
                .expect("set_if_absent")
            } else {
                kv.set_ttl(ns, "brief", Some(Duration::from_secs(3600)))
                    .await
                    .expect("set_ttl")
            };
            (task, answer, began, start.elapsed())
        })
    });
    let answers: Vec<(usize, bool, Duration, Duration)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let writers: Vec<&(usize, bool, Duration, Duration)> = answers
        .iter()
        .filter(|(task, ok, ..)| task % 2 == 0 && *ok)
        .collect();
    assert_eq!(writers.len(), 1, "one set_if_absent wins: {writers:?}");
    let (winner, _, began, _) = *writers[0];
    for (task, changed, _, ended) in answers.iter().filter(|(task, ..)| task % 2 == 1) {
        assert!(
            !changed || *ended >= began,
            "task {task} changed the TTL of an item before it was written"
        );
    }
    let timed =
        f.kv.get_with_ttl(ns, "brief")
            .await
            .expect("get_with_ttl")
            .expect("the winner's value");
    assert_eq!(timed.value, format!("t{winner}").as_bytes());
    let changed = answers.iter().any(|(task, ok, ..)| task % 2 == 1 && *ok);
    match timed.ttl {
        Ttl::Remaining(left) if changed => assert!(left > Duration::from_secs(50), "{left:?}"),
        Ttl::Remaining(left) => assert!(left <= Duration::from_secs(60), "{left:?}"),
        other => panic!("the winner's TTL is gone: {other:?}"),
    }
}
