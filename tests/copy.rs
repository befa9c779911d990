//! `storekit::copy`: everything a store holds arrives in another backend equal (ids,
//! versions, token hashes, deadlines), again and again, and after an interruption.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{FULL, Sizes, assert_same, open, seed, snapshot};
use storekit::copy::{CopyOptions, Kind, NoProgress, Progress, copy};
use storekit::{IdKind, MemoryStore, NewUser, Stores};

const SMALL: Sizes = Sizes {
    users: 40,
    kv: 300,
    records: 200,
};

fn memory() -> Stores {
    MemoryStore::with_id_kind(IdKind::Uuid).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_is_equal_and_a_second_copy_changes_nothing() {
    let (source, destination) = (memory(), memory());
    seed(&source, SMALL).await;
    let first = copy(&source, &destination, &CopyOptions::default(), &NoProgress)
        .await
        .expect("copy");
    assert!(first.is_complete(), "{first:?}");
    assert_eq!(first.users_created, 40);
    assert_eq!(first.kv_items, 300);
    assert_eq!(first.records.get("catalogue"), Some(&200));
    assert_same(
        &snapshot(&source).await,
        &snapshot(&destination).await,
        "copy",
    );

    let second = copy(&source, &destination, &CopyOptions::default(), &NoProgress)
        .await
        .expect("copy again");
    assert!(second.is_complete(), "{second:?}");
    assert_eq!((second.users_created, second.users_updated), (0, 0));
    assert_eq!(second.users_unchanged, 40);
    assert_same(
        &snapshot(&source).await,
        &snapshot(&destination).await,
        "again",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_kind_or_one_namespace_is_copied() {
    let source = memory();
    seed(&source, SMALL).await;
    let destination = memory();
    let options = CopyOptions {
        only: Some(Kind::Kv),
        namespace: Some("flags".into()),
        ..CopyOptions::default()
    };
    let summary = copy(&source, &destination, &options, &NoProgress)
        .await
        .expect("copy");
    assert!(summary.is_complete(), "{summary:?}");
    assert_eq!(summary.kv_items, 100);
    let copied = snapshot(&destination).await;
    assert!(copied.users.is_empty() && copied.records.is_empty());
    assert!(copied.kv.keys().all(|(namespace, _)| namespace == "flags"));
    assert_eq!(copied.kv.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_whose_email_is_taken_is_reported_not_overwritten() {
    let (source, destination) = (memory(), memory());
    seed(&source, SMALL).await;
    let squatter = destination
        .auth()
        .create_user(NewUser::new("USER7@example.com", "other"))
        .await
        .expect("create");
    let summary = copy(&source, &destination, &CopyOptions::default(), &NoProgress)
        .await
        .expect("copy");
    assert_eq!(summary.conflicts.len(), 1, "{summary:?}");
    assert!(summary.conflicts[0].contains("email"), "{summary:?}");
    assert!(!summary.is_complete());
    let kept = destination
        .auth()
        .get_user(squatter.id)
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(kept, squatter, "the destination's own user is untouched");
    // Counts compare too: the squatter makes up the number of users, not their accounts.
    assert!(
        summary
            .mismatches
            .iter()
            .any(|line| line.starts_with("oauth accounts")),
        "{summary:?}"
    );
}

/// Records what each stage said it would copy.
#[derive(Default)]
struct Totals(std::sync::Mutex<Vec<(String, Option<u64>)>>);

impl Progress for Totals {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((what.to_owned(), total));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tables_copy_in_parallel_segments_sized_before_reading() {
    for segments in [1, 3, 8] {
        let (source, destination) = (memory(), memory());
        seed(&source, SMALL).await;
        let options = CopyOptions {
            only: Some(Kind::Tables),
            segments: Some(segments),
            batch: 7,
            ..CopyOptions::default()
        };
        let totals = Totals::default();
        let summary = copy(&source, &destination, &options, &totals)
            .await
            .expect("copy");
        assert!(summary.is_complete(), "{segments} segments: {summary:?}");
        assert_eq!(summary.records.get("catalogue"), Some(&200));
        let said = totals.0.lock().expect("totals").clone();
        // The memory store knows its size exactly: the bar's total, with nothing counted.
        assert_eq!(said, [("table catalogue".to_owned(), Some(200))]);
        assert_eq!(
            snapshot(&source).await.records,
            snapshot(&destination).await.records,
            "{segments} segments"
        );
    }
    let refused = copy(
        &memory(),
        &memory(),
        &CopyOptions {
            segments: Some(0),
            ..CopyOptions::default()
        },
        &NoProgress,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(storekit::Error::InvalidInput {
                what: "segments",
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_of_another_id_kind_are_refused_before_anything_is_written() {
    let source = memory();
    seed(&source, SMALL).await;
    let destination: Stores = MemoryStore::with_id_kind(IdKind::Int).into();
    let refused = copy(&source, &destination, &CopyOptions::default(), &NoProgress).await;
    assert!(
        matches!(
            refused,
            Err(storekit::Error::InvalidInput {
                what: "id kind",
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(snapshot(&destination).await.kv.is_empty());
}

/// Stops a copy (drops it mid-flight, as a killed process would stop) once it has written
/// `after` items of its stage.
struct StopAfter {
    written: AtomicU64,
    after: u64,
    stop: tokio::sync::Notify,
}

impl Progress for StopAfter {
    fn advance(&self, done: u64) {
        if self.written.fetch_add(done, Ordering::SeqCst) + done >= self.after {
            self.stop.notify_one();
        }
    }
}

async fn interrupted_then_resumed(source: &Stores, destination: &Stores, after: u64) {
    let stopper = Arc::new(StopAfter {
        written: AtomicU64::new(0),
        after,
        stop: tokio::sync::Notify::new(),
    });
    let options = CopyOptions::default();
    tokio::select! {
        done = copy(source, destination, &options, stopper.as_ref()) => {
            panic!("the copy finished before it was stopped: {done:?}")
        }
        () = stopper.stop.notified() => {}
    }
    let partial = snapshot(destination).await;
    let whole = snapshot(source).await;
    assert!(
        partial.kv.len() + partial.users.len() < whole.kv.len() + whole.users.len(),
        "stopped half-way"
    );
    let summary = copy(source, destination, &options, &NoProgress)
        .await
        .expect("the copy runs again");
    assert!(summary.is_complete(), "{summary:?}");
    assert_same(&whole, &snapshot(destination).await, "after the rerun");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_stopped_half_way_and_run_again_ends_equal_on_sqlite() {
    let source = open(&common::sqlite_url("copy-stop-source")).await;
    let destination = open(&common::sqlite_url("copy-stop-destination")).await;
    seed(&source, SMALL).await;
    interrupted_then_resumed(&source, &destination, 20).await;
}

/// The chain: SQLite → DynamoDB → PostgreSQL → SQLite, 1,000 users, 10,000 kv items
/// and 5,000 records, the last store equal to the first; then a copy stopped half-way into a
/// fresh PostgreSQL store and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_dynamodb_to_postgres_to_sqlite_ends_equal() {
    let (Some(dynamodb), Some(postgres), Some(postgres_again)) = (
        common::dynamodb_url("copychain"),
        common::postgres_url("copychain"),
        common::postgres_url("copyresume"),
    ) else {
        return;
    };
    let first = open(&common::sqlite_url("copy-chain-first")).await;
    seed(&first, FULL).await;
    let original = snapshot(&first).await;
    let hops = [
        open(&dynamodb).await,
        open(&postgres).await,
        open(&common::sqlite_url("copy-chain-last")).await,
    ];
    let mut from = &first;
    for to in &hops {
        let summary = copy(from, to, &CopyOptions::default(), &NoProgress)
            .await
            .unwrap_or_else(|err| panic!("{} → {}: {err}", from.backend(), to.backend()));
        assert!(
            summary.is_complete(),
            "{} → {}: {summary:?}",
            from.backend(),
            to.backend()
        );
        assert_eq!(summary.users_created, 1_000);
        assert_eq!(summary.kv_items, 10_000);
        assert_eq!(summary.records.get("catalogue"), Some(&5_000));
        from = to;
    }
    assert_same(
        &original,
        &snapshot(&hops[2]).await,
        "sqlite after the chain",
    );

    let resumed = open(&postgres_again).await;
    interrupted_then_resumed(&first, &resumed, 300).await;
    for stores in hops.iter().chain([&resumed]) {
        stores.drop_tables().await.expect("drop");
    }
}
