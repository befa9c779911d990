//! DynamoDB going away in the middle of a load and coming back, as a failover or a network
//! partition does: calls fail with retryable errors meanwhile, the same store serves again
//! afterwards, and no user is half-written (a user item without its email claim, or the
//! reverse).
//!
//! The outage is a proxy in front of DynamoDB Local (from `STOREKIT_DYNAMODB_ENDPOINT`) that
//! cuts every connection and refuses new ones while "down", so other tests sharing the server
//! are not disturbed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storekit_core::{KvStore, NewUser, UserStore};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy that can be switched off (every connection cut, new ones closed at once) and on.
struct Proxy {
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> (Self, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accepting, tracked) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked
                    .lock()
                    .expect("not poisoned")
                    .push(task.abort_handle());
            }
        });
        (Self { up, connections }, format!("http://{address}"))
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().expect("not poisoned").drain(..) {
            connection.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_load_is_retryable_and_leaves_no_half_written_user() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (proxy, proxied) = Proxy::start(upstream).await;
    let mut prefix_bytes = [0u8; 5];
    getrandom::fill(&mut prefix_bytes).expect("randomness");
    let prefix: String = prefix_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let config = DynamoDbConfig::builder()
        .endpoint(&proxied)
        .region("us-east-1")
        .credentials("storekit", "storekit")
        .table_prefix(format!("outage{prefix}_"))
        .shard_count(2)
        .attempt_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_secs(1))
        .build()
        .expect("config");
    let store = DynamoDbStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");

    // Writers run for 3.5 s; DynamoDB is away from 0.3 s to 2.8 s, longer than an operation
    // may take with its retries (1 s), so calls made during the outage fail.
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    let writers: Vec<_> = (0..6)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0.. {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    let email = format!("outage-{task}-{i}@example.com");
                    let created = store.create_user(NewUser::new(email.clone(), "h")).await;
                    let key = format!("{task}-{i}");
                    let set = store.set("outage", &key, b"v", None).await;
                    for err in [created.as_ref().err(), set.as_ref().err()]
                        .into_iter()
                        .flatten()
                    {
                        assert!(err.is_retryable(), "not retryable: {err:?}");
                    }
                    outcomes.push((email, created.map(|user| user.id), key, set.is_ok()));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.down();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.up();
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.expect("a writer panicked"));
    }

    let failed = outcomes
        .iter()
        .filter(|(_, created, ..)| created.is_err())
        .count();
    assert!(failed > 0, "the outage was not felt");
    assert!(failed < outcomes.len(), "nothing went through");
    // Back up: the same store serves again.
    store
        .set("outage", "after", b"x", None)
        .await
        .expect("a write after the outage");
    for (email, created, key, set) in &outcomes {
        let by_email = store.get_user_by_email(email).await.expect("get by email");
        match created {
            Ok(id) => {
                assert_eq!(by_email.as_ref().map(|u| u.id), Some(*id), "{email}");
                let by_id = store.get_user(*id).await.expect("get");
                assert_eq!(by_id.map(|u| u.email), Some(email.clone()));
            }
            // The outcome is not known: if the user landed, it is whole.
            Err(_) => {
                if let Some(user) = by_email {
                    let by_id = store.get_user(user.id).await.expect("get");
                    assert_eq!(by_id.map(|u| u.email), Some(email.clone()), "{email}");
                }
            }
        }
        if *set {
            assert_eq!(
                store.get("outage", key).await.expect("get").as_deref(),
                Some(&b"v"[..])
            );
        }
    }
    store.drop_tables().await.expect("drop_tables");
}
