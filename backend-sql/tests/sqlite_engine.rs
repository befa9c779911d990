//! The SQLite engine in the large: a WAL that stays bounded, a runtime that keeps running
//! during long work and while another process holds the lock, and an in-place upgrade of a
//! database written by an earlier layout.
//!
//! None of these assert a speed: they assert what happened (file sizes, whether another task
//! ran, which error came back, and in which order things happened).
#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use storekit_core::{
    AccessTokenStore, Error, KvStore, NewUser, OAuthAccountStore, Result, UserStore,
};
use storekit_sql::{SqliteConfig, SqliteStore};

/// The bound the WAL must stay under, whatever the mix of writes.
const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("storekit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wal_size(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

async fn open(path: &Path, config: SqliteConfig) -> Result<SqliteStore> {
    let mut config = config;
    config.path = Some(path.to_owned());
    let store = SqliteStore::connect(&config).await?;
    store.migrate().await?;
    Ok(store)
}

/// Tracks the largest WAL seen, sampled every 500 operations.
struct WalWatch<'a> {
    db: &'a Path,
    largest: u64,
}

impl WalWatch<'_> {
    fn sample(&mut self, op: usize) {
        if op.is_multiple_of(500) {
            self.largest = self.largest.max(wal_size(self.db));
        }
    }
}

/// Checkpoints run in the background: a task that writes in a loop on a one-thread runtime,
/// never waiting for anything (the writer is always free), must not starve them.
#[tokio::test(flavor = "current_thread")]
async fn the_wal_stays_bounded_when_one_task_writes_without_pause() -> Result<()> {
    const N: usize = 100_000;
    let dir = TempDir::new("wal-one-task");
    let db = dir.file("wal.db");
    let store = open(&db, SqliteConfig::memory()).await?;
    let mut watch = WalWatch {
        db: &db,
        largest: 0,
    };
    // Without checkpoints these commits leave about 1.2 GB of WAL (measured).
    let value = [3u8; 1024];
    for i in 0..N {
        store.set("kv", &format!("key-{i}"), &value, None).await?;
        watch.sample(i);
    }
    assert!(
        watch.largest < WAL_LIMIT,
        "the WAL reached {} bytes",
        watch.largest
    );
    assert_eq!(
        store.get("kv", "key-99999").await?.as_deref(),
        Some(&value[..])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_creates_and_deletes() -> Result<()> {
    const N: usize = 50_000;
    let dir = TempDir::new("wal");
    let db = dir.file("wal.db");
    let store = open(&db, SqliteConfig::memory()).await?;
    let mut watch = WalWatch {
        db: &db,
        largest: 0,
    };
    let value = [7u8; 1024];

    // User creates return the new id (INSERT … RETURNING), kv deletes the old deadline
    // (DELETE … RETURNING): the statements that once stopped the WAL from checkpointing.
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let user = store
            .create_user(NewUser::new(format!("user{i}@example.com"), "hash"))
            .await?;
        ids.push(user.id);
        watch.sample(i);
    }
    for i in 0..N {
        store.set("kv", &format!("key-{i}"), &value, None).await?;
        watch.sample(i);
    }
    // Deletes of both kinds, interleaved.
    for (i, id) in ids.into_iter().enumerate() {
        store.delete_user(id).await?;
        assert!(store.delete("kv", &format!("key-{i}")).await?);
        watch.sample(i);
    }
    watch.sample(0);
    assert!(
        watch.largest < WAL_LIMIT,
        "the WAL reached {} bytes",
        watch.largest
    );
    assert_eq!(
        store
            .list_users(storekit_core::PageRequest::first(10))
            .await?
            .items
            .len(),
        0
    );
    Ok(())
}

/// A task that counts while it gets to run, to tell whether the runtime was free.
struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start() -> Self {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (ticks.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        Self { ticks, stop }
    }

    /// How many times the ticker ran while `work` was awaited. The count is read right after
    /// `work` completes, with no await in between, so ticks after it are not counted.
    async fn during<T>(&self, work: impl Future<Output = T>) -> (T, u64) {
        let before = self.ticks.load(Ordering::Relaxed);
        let out = work.await;
        (out, self.ticks.load(Ordering::Relaxed) - before)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn long_work_leaves_the_runtime_free() -> Result<()> {
    let dir = TempDir::new("runtime");
    let store = open(&dir.file("runtime.db"), SqliteConfig::memory()).await?;
    let ticker = Ticker::start();
    let value = [1u8; 100];

    let keys: Vec<String> = (0..100_000).map(|i| format!("key-{i:06}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &value[..])).collect();
    let (filled, ticks) = ticker.during(store.set_many("big", &items, None)).await;
    filled?;
    assert!(
        ticks > 0,
        "the runtime stalled during a 100,000-item set_many"
    );
    assert_eq!(
        store.get("big", "key-099999").await?.as_deref(),
        Some(&value[..])
    );

    let (cleared, ticks) = ticker.during(store.clear("big")).await;
    cleared?;
    assert!(ticks > 0, "the runtime stalled during a 100,000-item clear");
    assert!(!store.contains("big", "key-000000").await?);

    let (written, ticks) = ticker
        .during(store.set_many("big", &items[..50_000], None))
        .await;
    written?;
    assert!(
        ticks > 0,
        "the runtime stalled during a 50,000-item set_many"
    );

    // 32 writers: each write waits for the writer asynchronously, so the ticker runs between.
    let writers = (0..32).map(|w| {
        let store = store.clone();
        async move {
            for i in 0..50 {
                store
                    .set("writers", &format!("{w}-{i}"), &value, None)
                    .await?;
            }
            Ok::<_, Error>(())
        }
    });
    let (results, ticks) = ticker
        .during(futures::future::join_all(writers.map(tokio::spawn)))
        .await;
    for result in results {
        result.map_err(|e| Error::backend("test", e))??;
    }
    assert!(
        ticks > 0,
        "the runtime stalled during 32 concurrent writers"
    );
    assert!(store.contains("writers", "31-49").await?);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_batch_abandoned_midway_leaves_nothing_behind() -> Result<()> {
    let dir = TempDir::new("abandoned");
    let store = open(&dir.file("abandoned.db"), SqliteConfig::memory()).await?;
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i:04}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    let mut batch = Box::pin(store.set_many("ns", &items, None));
    // Each poll writes one chunk inside the batch's transaction, then yields.
    for _ in 0..3 {
        assert!(futures::poll!(batch.as_mut()).is_pending());
    }
    drop(batch);
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = store.get_many("ns", &all).await?;
    assert!(
        found.iter().all(Option::is_none),
        "part of the batch was kept"
    );
    // The writer is free and outside any transaction: the next batch commits on its own.
    store.set_many("ns", &items[..10], None).await?;
    let reopened = open(&dir.file("abandoned.db"), SqliteConfig::memory()).await?;
    assert!(reopened.contains("ns", "key-0009").await?);
    assert!(!reopened.contains("ns", "key-0010").await?);
    Ok(())
}

/// Another process's connection holding the write lock until `release` is set, on a thread of
/// its own. Returns when the lock is taken; the thread reports when it let go.
fn hold_write_lock(db: &Path, release: Arc<AtomicBool>) -> std::thread::JoinHandle<Instant> {
    let conn = rusqlite::Connection::open(db).expect("open a second connection");
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO kv (namespace, key, value) VALUES ('other', 'holder', x'00');")
        .expect("take the write lock");
    std::thread::spawn(move || {
        while !release.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        conn.execute_batch("COMMIT").expect("release the lock");
        Instant::now()
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_write_waits_for_another_process_without_stalling_the_runtime() -> Result<()> {
    let dir = TempDir::new("locked");
    let db = dir.file("locked.db");
    let store = open(&db, SqliteConfig::memory()).await?;
    store.set("kv", "before", b"1", None).await?;
    let ticker = Ticker::start();

    let release = Arc::new(AtomicBool::new(false));
    let holder = hold_write_lock(&db, release.clone());
    let releaser = {
        let release = release.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            release.store(true, Ordering::Relaxed);
        })
    };
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(store.get("kv", "before").await?.as_deref(), Some(&b"1"[..]));
    let (written, ticks) = ticker.during(store.set("kv", "waited", b"2", None)).await;
    let written_at = Instant::now();
    written?;
    let released_at = holder.join().expect("the holder thread");
    releaser.await.map_err(|e| Error::backend("test", e))?;
    assert!(
        written_at > released_at,
        "the write finished before the lock was released"
    );
    assert!(ticks > 0, "the runtime stalled while waiting for the lock");
    assert_eq!(store.get("kv", "waited").await?.as_deref(), Some(&b"2"[..]));
    assert!(store.contains("other", "holder").await?);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() -> Result<()> {
    let dir = TempDir::new("timeout");
    let db = dir.file("timeout.db");
    let timeout = Duration::from_millis(500);
    let store = open(&db, SqliteConfig::memory().busy_timeout(timeout)).await?;
    let ticker = Ticker::start();

    let release = Arc::new(AtomicBool::new(false));
    let holder = hold_write_lock(&db, release.clone());
    let started = Instant::now();
    let (written, ticks) = ticker.during(store.set("kv", "late", b"x", None)).await;
    let failed_after = started.elapsed();
    release.store(true, Ordering::Relaxed);
    let released_at = holder.join().expect("the holder thread");

    assert!(
        matches!(written, Err(Error::Unavailable { .. })),
        "expected Unavailable, got {written:?}"
    );
    assert!(
        failed_after >= timeout,
        "gave up after {failed_after:?}, before the busy timeout of {timeout:?}"
    );
    assert!(
        started + failed_after < released_at,
        "the error came only once the lock was released"
    );
    assert!(ticks > 0, "the runtime stalled while waiting for the lock");
    assert_eq!(store.get("kv", "late").await?, None, "nothing was written");
    // Once the lock is free, the store writes again.
    store.set("kv", "late", b"x", None).await?;
    Ok(())
}

/// `tests/fixtures/storekit-v1.sqlite` was written by the first release's layout (a
/// WITHOUT ROWID kv table, schema version 1): kv items with and without TTL, one already
/// expired, a 5,000-byte value, a counter, and a user with an OAuth account and a token.
#[tokio::test]
async fn migrate_upgrades_a_database_of_the_first_layout_in_place() -> Result<()> {
    let dir = TempDir::new("upgrade");
    let db = dir.file("v1.db");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/storekit-v1.sqlite");
    std::fs::copy(&fixture, &db).expect("copy the fixture");
    let layout = |db: &Path| -> (String, String) {
        let conn = rusqlite::Connection::open(db).expect("open the file");
        let kv: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'kv'", [], |r| {
                r.get(0)
            })
            .expect("kv table");
        let version: String = conn
            .query_row(
                "SELECT value FROM storekit_meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .expect("schema version");
        (kv, version)
    };
    let (before, version) = layout(&db);
    assert!(before.contains("WITHOUT ROWID"), "{before}");
    assert_eq!(version, "1");

    let store = open(&db, SqliteConfig::memory()).await?;
    store.migrate().await?;

    assert_eq!(
        store.get("cache", "forever").await?.as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        store.get("cache", "later").await?.as_deref(),
        Some(&b"kept with ttl"[..])
    );
    assert_eq!(store.get("cache", "gone").await?, None, "still expired");
    assert_eq!(store.get("other", "big").await?, Some(vec![42u8; 5000]));
    assert_eq!(store.increment("other", "counter", 1, None).await?, 42);
    let dump = store.dump().await?;
    assert!(
        dump.contains("\"kv\": 3 cache later kept with ttl 4949295681251"),
        "the deadline is kept: {dump}"
    );
    let user = store
        .get_user_by_email("ADA@example.com")
        .await?
        .expect("the user is kept");
    assert_eq!(store.oauth_accounts(user.id).await?.len(), 1);
    // The token's secret is not in the file; its hash row is, and goes with the user.
    assert!(dump.contains("\"access_tokens\":"));
    store.delete_access_tokens_for_user(user.id).await?;
    assert!(!store.dump().await?.contains("\"access_tokens\":"));

    // New writes use the new layout's unique index.
    store.set("cache", "forever", b"replaced", None).await?;
    assert_eq!(
        store.get("cache", "forever").await?.as_deref(),
        Some(&b"replaced"[..])
    );
    let mut keys: Vec<String> = futures::TryStreamExt::try_collect(store.keys("cache", "")).await?;
    keys.sort();
    assert_eq!(keys, ["forever", "later"]);
    drop(store);

    let (after, version) = layout(&db);
    assert!(!after.contains("WITHOUT ROWID"), "{after}");
    assert_eq!(version, "2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_grouped_into_one_transaction_keep_their_own_outcomes() -> Result<()> {
    const TASKS: usize = 32;
    const EMAILS: usize = 100;
    let dir = TempDir::new("grouped");
    let store = open(&dir.file("grouped.db"), SqliteConfig::memory()).await?;
    let tasks = (0..TASKS).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut taken = 0;
            for i in 0..50 {
                store
                    .set(
                        "kv",
                        &format!("{t}-{i}"),
                        format!("{t}:{i}").as_bytes(),
                        None,
                    )
                    .await?;
                // Every email is tried by several tasks in different letter cases: of the
                // writes grouped together, the duplicates fail and the others commit.
                let email = format!("User{}@Example.com", (t * 50 + i) % EMAILS);
                let email = if t % 2 == 0 {
                    email.to_lowercase()
                } else {
                    email
                };
                match store.create_user(NewUser::new(email, "hash")).await {
                    Ok(_) => {}
                    Err(Error::AlreadyExists { what: "email" }) => taken += 1,
                    Err(other) => return Err(other),
                }
            }
            Ok::<_, Error>(taken)
        })
    });
    let mut taken = 0;
    for task in futures::future::join_all(tasks).await {
        taken += task.map_err(|e| Error::backend("test", e))??;
    }
    assert_eq!(
        taken,
        TASKS * 50 - EMAILS,
        "every email but its first create is refused"
    );
    let mut users = 0;
    let mut page = storekit_core::PageRequest::first(1000);
    loop {
        let listed = store.list_users(page.clone()).await?;
        users += listed.items.len();
        match listed.next {
            Some(next) => page = storekit_core::PageRequest::after(1000, next),
            None => break,
        }
    }
    assert_eq!(users, EMAILS);
    for t in 0..TASKS {
        for i in 0..50 {
            let value = store.get("kv", &format!("{t}-{i}")).await?;
            assert_eq!(value, Some(format!("{t}:{i}").into_bytes()));
        }
    }
    Ok(())
}
