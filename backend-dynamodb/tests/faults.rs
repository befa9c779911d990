//! DynamoDB under faults: answers lost after a write landed (the SDK resends the request, and
//! the write must still happen exactly once, with the right answer), and an endpoint that
//! accepts connections but never answers (every operation must fail with
//! a retryable error within the configured timeouts instead of hanging).
//!
//! The lost-answer tests run against the endpoint in `STOREKIT_DYNAMODB_ENDPOINT` (DynamoDB
//! Local; `eval "$(scripts/services.sh up)"` starts one). Without it they say loudly that they
//! skipped; with `CI` set they fail. The silent-server test needs no server.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use futures::FutureExt as _;
use storekit_core::{Error, KvStore, NewUser, UserStore};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

/// Loses the answer to the next attempt of one operation after the server has applied it, as
/// a connection reset while reading the response would: the SDK sees a retryable response
/// error and sends the request again. Counts attempts per operation.
#[derive(Debug, Clone, Default)]
struct LoseAnswer {
    attempts: Arc<Mutex<HashMap<String, usize>>>,
    next: Arc<Mutex<Option<Loss>>>,
}

/// Which answer to lose, and what to run after losing it (before the SDK's resend), as
/// another client would in that gap.
struct Loss {
    operation: &'static str,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loss")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn operation(cfg: &ConfigBag) -> &str {
    cfg.load::<Metadata>().map_or("unknown", Metadata::name)
}

impl LoseAnswer {
    /// The answer to the next attempt of `operation` is lost.
    fn lose_next(&self, operation: &'static str) {
        *lock(&self.next) = Some(Loss {
            operation,
            then: None,
        });
    }

    /// As [`LoseAnswer::lose_next`], and `then` runs before the SDK resends the request.
    fn lose_next_then(&self, operation: &'static str, then: impl FnOnce() + Send + 'static) {
        *lock(&self.next) = Some(Loss {
            operation,
            then: Some(Box::new(then)),
        });
    }

    /// True once the armed loss has happened.
    fn lost(&self) -> bool {
        lock(&self.next).is_none()
    }

    fn attempts(&self, operation: &str) -> usize {
        lock(&self.attempts).get(operation).copied().unwrap_or(0)
    }

    fn reset(&self) {
        lock(&self.attempts).clear();
    }
}

impl Intercept for LoseAnswer {
    fn name(&self) -> &'static str {
        "storekit-test-lose-answer"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *lock(&self.attempts)
            .entry(operation(cfg).to_owned())
            .or_default() += 1;
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = operation(cfg);
        let loss = {
            let mut next = lock(&self.next);
            match next.as_ref() {
                Some(loss) if loss.operation == name => next.take(),
                _ => None,
            }
        };
        let Some(loss) = loss else { return Ok(()) };
        // Only an answer the server gave can be lost: the write has landed (or was refused).
        if let Some(output) = context.output_or_error_mut() {
            *output = Err(OrchestratorError::response(
                "connection reset by the test while reading the answer".into(),
            ));
        }
        if let Some(then) = loss.then {
            then();
        }
        Ok(())
    }
}

/// A client of DynamoDB Local with the SDK's standard retries (3 attempts) and, if given, the
/// answer-losing interceptor.
fn client(endpoint: &str, faults: Option<LoseAnswer>) -> Client {
    let mut client_config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("storekit", "storekit", None, None, "test"))
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let Some(faults) = faults {
        client_config = client_config.interceptor(faults);
    }
    Client::from_conf(client_config.build())
}

fn unique_prefix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("randomness");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("skf{hex}_")
}

/// Runs `test` on a store with fresh tables whose client loses answers on request, dropping
/// the tables after it whether it passed or not.
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(DynamoDbStore, LoseAnswer) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let faults = LoseAnswer::default();
    let config = DynamoDbConfig::builder()
        .table_prefix(unique_prefix())
        .shard_count(2)
        .build()
        .expect("config");
    let store = DynamoDbStore::from_client(client(&endpoint, Some(faults.clone())), &config);
    store.migrate().await.expect("migrate");
    faults.reset();
    let outcome = AssertUnwindSafe(test(store.clone(), faults))
        .catch_unwind()
        .await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The same tables as `store`, through a plain client driven by a runtime of its own: another
/// process, as far as `store` can tell. Blocks until `work` is done.
fn run_elsewhere<T: Send + 'static>(
    store: &DynamoDbStore,
    work: impl AsyncFnOnce(DynamoDbStore) -> T + Send + 'static,
) -> T {
    let endpoint = common::endpoint().expect("the store has an endpoint");
    let other = DynamoDbStore::from_client(client(&endpoint, None), store.config());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work(other))
    })
    .join()
    .expect("the other process")
}

async fn value(store: &DynamoDbStore, key: &str) -> Option<Vec<u8>> {
    store.get("ns", key).await.expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_whose_answer_is_lost_counts_once() {
    with_store(|store, faults| async move {
        assert_eq!(
            store.increment("ns", "c", 10, None).await.expect("set up"),
            10
        );
        faults.lose_next("UpdateItem");
        let after = store
            .increment("ns", "c", 1, None)
            .await
            .expect("increment");
        assert!(faults.lost(), "the answer was lost");
        assert!(faults.attempts("UpdateItem") >= 2, "the SDK resent it");
        assert_eq!(after, 11, "the answer is this call's own result");
        assert_eq!(value(&store, "c").await.as_deref(), Some(&b"11"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_cost_what_the_docs_say_and_leave_no_token() {
    with_store(|store, faults| async move {
        assert_eq!(store.increment("ns", "c", 1, None).await.expect("new"), 1);
        assert_eq!(
            faults.attempts("UpdateItem"),
            2,
            "refused ADD, then token removal"
        );
        assert_eq!(faults.attempts("PutItem"), 1, "the new counter");
        faults.reset();
        assert_eq!(store.increment("ns", "c", 1, None).await.expect("next"), 2);
        assert_eq!(faults.attempts("UpdateItem"), 2, "ADD, then token removal");
        assert_eq!(faults.attempts("PutItem"), 0);

        faults.lose_next("UpdateItem");
        assert_eq!(store.increment("ns", "c", 1, None).await.expect("lost"), 3);
        assert_eq!(faults.attempts("UpdateItem"), 5, "resent once");

        store.set("ns", "k", b"v", None).await.expect("set");
        assert!(
            store
                .compare_and_swap("ns", "k", Some(b"v"), b"w", None)
                .await
                .expect("cas")
        );
        assert!(
            store
                .set_if_absent("ns", "a", b"x", None)
                .await
                .expect("set_if_absent")
        );
        let dump = store.dump().await.expect("dump");
        assert!(
            !dump.contains("(\"i"),
            "an increment's token was left: {dump}"
        );
        assert_eq!(
            store
                .get_many("ns", &["c", "k", "a"])
                .await
                .expect("get_many"),
            vec![
                Some(b"3".to_vec()),
                Some(b"w".to_vec()),
                Some(b"x".to_vec())
            ],
            "tokens never show in values"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_increment_counts_once_despite_increments_in_between() {
    with_store(|store, faults| async move {
        assert_eq!(
            store.increment("ns", "c", 10, None).await.expect("set up"),
            10
        );
        let other = store.clone();
        faults.lose_next_then("UpdateItem", move || {
            let theirs = run_elsewhere(&other, async |other| {
                other.increment("ns", "c", 100, None).await
            });
            assert_eq!(theirs.expect("the other increment"), 111);
        });
        let after = store
            .increment("ns", "c", 1, None)
            .await
            .expect("increment");
        assert!(faults.lost(), "the answer was lost");
        assert_eq!(after, 11, "this call's result, not the other's");
        assert_eq!(value(&store, "c").await.as_deref(), Some(&b"111"[..]));
        // Two different calls both apply.
        assert_eq!(
            store.increment("ns", "c", 1, None).await.expect("next"),
            112
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_counter_whose_answer_is_lost_counts_once() {
    with_store(|store, faults| async move {
        faults.lose_next("PutItem");
        let after = store
            .increment("ns", "new", 1, None)
            .await
            .expect("increment");
        assert!(faults.lost(), "the answer was lost");
        assert_eq!(after, 1);
        assert_eq!(value(&store, "new").await.as_deref(), Some(&b"1"[..]));

        // A value of digits converted to a counter by a put whose answer is lost.
        store.set("ns", "digits", b"41", None).await.expect("set");
        faults.lose_next("PutItem");
        let after = store
            .increment("ns", "digits", 1, None)
            .await
            .expect("convert");
        assert!(faults.lost(), "the answer was lost");
        assert_eq!(after, 42);
        assert_eq!(value(&store, "digits").await.as_deref(), Some(&b"42"[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_if_absent_whose_answer_is_lost_reports_its_own_write() {
    with_store(|store, faults| async move {
        faults.lose_next("PutItem");
        let written = store
            .set_if_absent("ns", "k", b"mine", None)
            .await
            .expect("set_if_absent");
        assert!(faults.lost(), "the answer was lost");
        assert!(faults.attempts("PutItem") >= 2, "the SDK resent it");
        assert!(written, "this call's write is the one stored");
        assert_eq!(value(&store, "k").await.as_deref(), Some(&b"mine"[..]));
        // Another caller still finds the key taken.
        assert!(
            !store
                .set_if_absent("ns", "k", b"theirs", None)
                .await
                .expect("second set_if_absent")
        );
        let many = store.get_many("ns", &["k"]).await.expect("get_many");
        assert_eq!(
            many,
            vec![Some(b"mine".to_vec())],
            "no token in values read"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_swap_whose_answer_is_lost_reports_its_own_write() {
    with_store(|store, faults| async move {
        store.set("ns", "k", b"old", None).await.expect("set");
        faults.lose_next("PutItem");
        let swapped = store
            .compare_and_swap("ns", "k", Some(b"old"), b"new", None)
            .await
            .expect("compare_and_swap");
        assert!(faults.lost(), "the answer was lost");
        assert!(swapped, "this call's write is the one stored");
        assert_eq!(value(&store, "k").await.as_deref(), Some(&b"new"[..]));

        // Expecting absence goes through the same path.
        faults.lose_next("PutItem");
        let created = store
            .compare_and_swap("ns", "fresh", None, b"first", None)
            .await
            .expect("compare_and_swap from absent");
        assert!(faults.lost(), "the answer was lost");
        assert!(created, "this call's write is the one stored");

        // A swap from a value this call did not write is still refused.
        assert!(
            !store
                .compare_and_swap("ns", "k", Some(b"old"), b"again", None)
                .await
                .expect("stale swap")
        );
        // The swapped values read back as written, alone, everywhere.
        assert!(
            store
                .compare_and_swap("ns", "k", Some(b"new"), b"newer", None)
                .await
                .expect("swap of a swapped value")
        );
        let many = store
            .get_many("ns", &["k", "fresh"])
            .await
            .expect("get_many");
        assert_eq!(many, vec![Some(b"newer".to_vec()), Some(b"first".to_vec())]);
    })
    .await;
}

/// A server that accepts connections and never answers, until the test ends.
fn silent_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Accept a bounded number of connections, so the thread ends once the test is over.
        for stream in listener.incoming().take(64) {
            match stream {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
    });
    (format!("http://{address}"), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_fails_within_the_timeout() {
    let (endpoint, _server) = silent_server();
    let operation_timeout = Duration::from_secs(1);
    let config = DynamoDbConfig::builder()
        .endpoint(&endpoint)
        .region("us-east-1")
        .credentials("storekit", "storekit")
        .attempt_timeout(Duration::from_millis(300))
        .operation_timeout(operation_timeout)
        .build()
        .expect("config");
    let store = DynamoDbStore::connect(&config).await.expect("connect");
    let bound = operation_timeout * 3;

    let started = Instant::now();
    let got = tokio::time::timeout(bound * 2, store.get("ns", "k"))
        .await
        .expect("get came back");
    assert!(got.as_ref().is_err_and(Error::is_retryable), "{got:?}");
    assert!(
        started.elapsed() < bound,
        "get took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let set = tokio::time::timeout(bound * 2, store.set("ns", "k", b"v", None))
        .await
        .expect("set came back");
    // The request reached the server, which never answered: it may have been applied.
    assert!(matches!(set, Err(Error::OutcomeUnknown { .. })), "{set:?}");
    assert!(
        started.elapsed() < bound,
        "set took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let created = tokio::time::timeout(
        bound * 2,
        store.create_user(NewUser::new("silent@example.com", "hash")),
    )
    .await
    .expect("create_user came back");
    assert!(
        created.as_ref().is_err_and(Error::is_retryable),
        "{created:?}"
    );
    assert!(
        started.elapsed() < bound,
        "create_user took {:?}",
        started.elapsed()
    );
}
