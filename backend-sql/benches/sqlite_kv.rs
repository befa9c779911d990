//! storekit's SQLite key-value store against raw rusqlite on the same file and settings.
//!
//! `cargo bench -p storekit-sql --bench sqlite_kv` prints operations per second and the ratio
//! storekit / raw for 1 KiB point reads and upserts. Raw rusqlite on the calling thread with a
//! cached prepared statement is the fastest way to use SQLite from Rust, so the ratio is what
//! storekit costs; absolute numbers vary with the machine's load, ratios far less.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use storekit_core::KvStore;
use storekit_sql::{SqliteConfig, SqliteStore};

const KEYS: usize = 10_000;
const VALUE: [u8; 1024] = [7; 1024];
const ROUND: Duration = Duration::from_millis(1500);

fn main() {
    let dir = std::env::temp_dir().join(format!("storekit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = raw_connection(&dir.join("raw.db"));
    let store = SqliteStore::open(&SqliteConfig::file(dir.join("storekit.db"))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.migrate()).unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i:05}")).collect();

    for key in &keys {
        raw_upsert(&raw, key);
        rt.block_on(store.set("bench", key, &VALUE, None)).unwrap();
    }

    let raw_reads = rate(|i| raw_get(&raw, &keys[i % KEYS]));
    let kit_reads = rate(|i| {
        rt.block_on(store.get("bench", &keys[i % KEYS]))
            .unwrap()
            .unwrap();
    });
    let raw_writes = rate(|i| raw_upsert(&raw, &keys[i % KEYS]));
    let kit_writes = rate(|i| {
        rt.block_on(store.set("bench", &keys[i % KEYS], &VALUE, None))
            .unwrap();
    });
    let kit_parallel = parallel_reads(&store, &keys);

    println!("SQLite, 1 KiB values, WAL + synchronous=NORMAL, {KEYS} keys");
    println!("| operation | raw rusqlite (ops/s) | storekit (ops/s) | storekit / raw |");
    println!("|---|---:|---:|---:|");
    row("point read", raw_reads, kit_reads);
    row("upsert", raw_writes, kit_writes);
    println!("| point read, 4 tasks on 2 threads | - | {kit_parallel:.0} | - |");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn row(name: &str, raw: f64, kit: f64) {
    println!("| {name} | {raw:.0} | {kit:.0} | {:.2} |", kit / raw);
}

/// Operations per second of `op` over one round.
fn rate(mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < ROUND {
        for _ in 0..100 {
            op(done);
            done += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn parallel_reads(store: &SqliteStore, keys: &[String]) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys = Arc::new(keys.to_vec());
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let (store, keys) = (store.clone(), keys.clone());
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while start.elapsed() < ROUND {
                        for _ in 0..100 {
                            let key = &keys[(done * 7 + t) % KEYS];
                            store.get("bench", key).await.unwrap().unwrap();
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total as f64 / start.elapsed().as_secs_f64()
    })
}

fn raw_connection(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, \
         expires_at INTEGER, PRIMARY KEY (namespace, key)) WITHOUT ROWID",
    )
    .unwrap();
    conn
}

fn raw_get(conn: &Connection, key: &str) {
    let mut stmt = conn
        .prepare_cached("SELECT value FROM kv WHERE namespace = ?1 AND key = ?2")
        .unwrap();
    let value: Vec<u8> = stmt
        .query_row(params!["bench", key], |row| row.get(0))
        .unwrap();
    assert_eq!(value.len(), VALUE.len());
}

fn raw_upsert(conn: &Connection, key: &str) {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO kv (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, NULL) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
        )
        .unwrap();
    stmt.execute(params!["bench", key, &VALUE[..]]).unwrap();
}
