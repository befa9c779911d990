//! DynamoDB-specific behaviour, against the endpoint in `STOREKIT_DYNAMODB_ENDPOINT` (DynamoDB
//! Local; `eval "$(scripts/services.sh up)"` starts one): pagination over large namespaces,
//! batch sizes, refusing oversized items before any request, and deleting a user without
//! leaving items behind. Requests are counted with an SDK interceptor, per operation, which can
//! also cut a store off from the server mid-operation.
//!
//! Without the variable the tests say loudly that they skipped; with `CI` set they fail.

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use futures::{FutureExt as _, TryStreamExt as _};
use storekit_core::{
    AccessTokenStore, Error, KvStore, KvStoreExt as _, LIMITS, NewOAuthAccount, NewUser,
    OAuthAccountStore, Ttl, User, UserId, UserStore,
};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

/// Counts the requests sent (attempts, so retries count too), by operation name, and can make
/// every request after a given one fail, as if the process had died right after sending it, or
/// run something just before a given request is sent.
#[derive(Debug, Clone, Default)]
struct Requests {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    cut: Arc<Mutex<Cut>>,
    hook: Arc<Mutex<Option<Hook>>>,
}

/// Work run (blocking the request) before the next request of an operation.
struct Hook {
    operation: &'static str,
    run: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

/// When requests stop reaching the server.
#[derive(Debug, Default)]
enum Cut {
    #[default]
    Never,
    /// After the next request of this operation.
    After(&'static str),
    /// From now on.
    Now,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Requests {
    fn counts(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        lock(&self.counts)
    }

    fn of(&self, operation: &str) -> usize {
        self.counts().get(operation).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.counts().values().sum()
    }

    fn reset(&self) {
        self.counts().clear();
    }

    /// Every request after the next one of `operation` fails, until [`Requests::restore`].
    fn cut_after(&self, operation: &'static str) {
        *lock(&self.cut) = Cut::After(operation);
    }

    fn restore(&self) {
        *lock(&self.cut) = Cut::Never;
    }

    /// Runs `run` before the next request of `operation` is sent, as another client would
    /// between two requests of an operation.
    fn before_next(&self, operation: &'static str, run: impl FnOnce() + Send + 'static) {
        *lock(&self.hook) = Some(Hook {
            operation,
            run: Box::new(run),
        });
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "storekit-test-request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", Metadata::name)
            .to_owned();
        let hook = {
            let mut hook = lock(&self.hook);
            match hook.as_ref() {
                Some(next) if next.operation == operation => hook.take(),
                _ => None,
            }
        };
        if let Some(hook) = hook {
            (hook.run)();
        }
        let mut cut = lock(&self.cut);
        match *cut {
            Cut::Now => return Err(format!("{operation} cut off by the test").into()),
            Cut::After(last) if last == operation => *cut = Cut::Now,
            _ => {}
        }
        *self.counts().entry(operation).or_default() += 1;
        Ok(())
    }
}

/// Runs `test` on a store with fresh tables and a request counter, dropping the tables after
/// it whether it passed or not.
async fn with_store<F, Fut>(shards: u16, test: F)
where
    F: FnOnce(DynamoDbStore, Requests) -> Fut,
    Fut: Future<Output = ()>,
{
    with_store_keeping(shards, Duration::ZERO, test).await;
}

/// [`with_store`], on a store that keeps expired kv items for `keep_expired`.
async fn with_store_keeping<F, Fut>(shards: u16, keep_expired: Duration, test: F)
where
    F: FnOnce(DynamoDbStore, Requests) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let requests = Requests::default();
    let config = DynamoDbConfig::builder()
        .table_prefix(unique_prefix())
        .shard_count(shards)
        .keep_expired(keep_expired)
        .build()
        .expect("config");
    let store = DynamoDbStore::from_client(client(&endpoint, Some(requests.clone())), &config);
    store.migrate().await.expect("migrate");
    requests.reset();
    let outcome = AssertUnwindSafe(test(store.clone(), requests))
        .catch_unwind()
        .await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A client of DynamoDB Local, with a request counter if given.
fn client(endpoint: &str, requests: Option<Requests>) -> Client {
    let mut client_config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("storekit", "storekit", None, None, "test"));
    if let Some(requests) = requests {
        client_config = client_config.interceptor(requests);
    }
    Client::from_conf(client_config.build())
}

/// The same tables as `store`, through a client of its own (no counter, no hook), driven by a
/// runtime of its own: another process, as far as `store` can tell.
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

fn unique_prefix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("randomness");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("skd{hex}_")
}

async fn all_keys(store: &DynamoDbStore, namespace: &str) -> HashSet<String> {
    store.keys(namespace, "").try_collect().await.expect("keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_1mb_is_listed_and_cleared_across_pages() {
    // Two shards of ~1.2 MB each: every shard needs at least two Query pages (1 MB each).
    with_store(2, |store, requests| async move {
        let value = vec![7u8; 8 * 1024];
        let keys: Vec<String> = (0..300).map(|i| format!("big-{i:04}")).collect();
        let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &value[..])).collect();
        store.set_many("big", &items, None).await.expect("set_many");
        store.set("small", "kept", b"x", None).await.expect("set");

        requests.reset();
        // The shards' pages are merged: every key once, in key order, across page boundaries.
        let listed: Vec<String> = store.keys("big", "").try_collect().await.expect("keys");
        assert_eq!(listed, keys, "every key once, in key order");
        let queries = requests.of("Query");
        assert!(queries >= 4, "2 shards x >= 2 pages, got {queries} queries");

        requests.reset();
        store.clear("big").await.expect("clear");
        assert!(requests.of("Query") >= 4, "clear pages too");
        assert!(
            all_keys(&store, "big").await.is_empty(),
            "cleared completely"
        );
        assert_eq!(
            store.get("small", "kept").await.expect("get").as_deref(),
            Some(&b"x"[..]),
            "other namespaces are untouched"
        );
    })
    .await;
}

/// A small namespace over 16 shards is listed with one Query per shard, asked for at once, and
/// its keys come merged in key order, a prefix's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_queries_every_shard_once_and_merges_in_key_order() {
    with_store(16, |store, requests| async move {
        let keys: Vec<String> = (0..200).map(|i| format!("k-{i:03}")).collect();
        let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
        store
            .set_many("merged", &items, None)
            .await
            .expect("set_many");
        store.set("merged", "a", b"v", None).await.expect("set");
        requests.reset();
        let listed: Vec<String> = store
            .keys("merged", "k-")
            .try_collect()
            .await
            .expect("keys");
        assert_eq!(listed, keys, "every key once, in key order");
        assert_eq!(requests.of("Query"), 16, "one Query per shard");
        let all: Vec<String> = store.keys("merged", "").try_collect().await.expect("keys");
        assert_eq!(all.first().map(String::as_str), Some("a"));
        assert_eq!(all.len(), keys.len() + 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_use_dynamodb_maximum_sizes() {
    with_store(16, |store, requests| async move {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let values: Vec<Vec<u8>> = (0..1000).map(|i| format!("v{i}").into_bytes()).collect();
        let items: Vec<(&str, &[u8])> = keys
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(Vec::as_slice))
            .collect();
        store.set_many("n", &items, None).await.expect("set_many");
        assert_eq!(requests.of("BatchWriteItem"), 40, "{:?}", requests.counts());
        assert_eq!(requests.total(), 40, "{:?}", requests.counts());

        requests.reset();
        let probe: Vec<&str> = keys.iter().map(String::as_str).collect();
        let got = store.get_many("n", &probe).await.expect("get_many");
        assert_eq!(requests.of("BatchGetItem"), 10, "{:?}", requests.counts());
        assert_eq!(requests.total(), 10, "{:?}", requests.counts());
        let expected: Vec<Option<Vec<u8>>> = values.into_iter().map(Some).collect();
        assert!(got == expected, "every value read back in order");

        // Duplicates are sent once; the last value of a key wins.
        requests.reset();
        let dups: Vec<(&str, &[u8])> = vec![("d", b"1"), ("e", b"x"), ("d", b"2")];
        store.set_many("n", &dups, None).await.expect("dups");
        assert_eq!(requests.of("BatchWriteItem"), 1);
        let got = store.get_many("n", &["d", "d", "e"]).await.expect("get");
        assert_eq!(
            got,
            vec![
                Some(b"2".to_vec()),
                Some(b"2".to_vec()),
                Some(b"x".to_vec())
            ]
        );
        store
            .delete_many("n", &["d", "d", "e"])
            .await
            .expect("delete_many");
        assert_eq!(store.get("n", "d").await.expect("get"), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_over_the_16mb_response_cap_are_completed() {
    // 60 values of ~390 KB: one BatchGetItem would answer ~23 MB, over DynamoDB's 16 MB cap, so
    // part of it comes back as unprocessed keys that must be fetched again.
    with_store(16, |store, requests| async move {
        let keys: Vec<String> = (0..60).map(|i| format!("huge-{i}")).collect();
        let values: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 390_000]).collect();
        let items: Vec<(&str, &[u8])> = keys
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(Vec::as_slice))
            .collect();
        store
            .set_many("huge", &items, None)
            .await
            .expect("set_many");
        requests.reset();
        let probe: Vec<&str> = keys.iter().map(String::as_str).collect();
        let got = store.get_many("huge", &probe).await.expect("get_many");
        assert!(
            requests.of("BatchGetItem") >= 2,
            "the cap forces a second call for the unprocessed keys: {:?}",
            requests.counts()
        );
        for (i, value) in values.into_iter().enumerate() {
            assert!(got[i].as_ref() == Some(&value), "item {i}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_over_400kb_is_refused_before_any_request() {
    with_store(16, |store, requests| async move {
        let over = vec![1u8; 400 * 1024 + 1];
        let err = store.set("ns", "big", &over, None).await.expect_err("set");
        assert!(
            matches!(err, Error::ValueTooLarge { size, .. } if size == over.len()),
            "{err:?}"
        );
        let err = store
            .set_many("ns", &[("ok", b"x"), ("big", &over)], None)
            .await
            .expect_err("set_many");
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
        let err = store
            .set_if_absent("ns", "big", &over, None)
            .await
            .expect_err("set_if_absent");
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
        let err = store
            .compare_and_swap("ns", "big", None, &over, None)
            .await
            .expect_err("compare_and_swap");
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
        assert_eq!(requests.total(), 0, "{:?}", requests.counts());

        // The largest value every backend accepts, under the widest key, is stored whole.
        let key = "🔑".repeat(LIMITS.max_key_bytes / 4);
        let namespace = "n".repeat(LIMITS.max_namespace_bytes);
        let largest = vec![2u8; LIMITS.max_value_bytes];
        store
            .set(&namespace, &key, &largest, None)
            .await
            .expect("largest item");
        let read = store.get(&namespace, &key).await.expect("get");
        assert!(read.as_deref() == Some(&largest[..]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_enables_ttl() {
    with_store(16, |store, _requests| async move {
        store.migrate().await.expect("second migrate");
        let table = format!("{}kv", store.config().table_prefix());
        let ttl = store
            .client()
            .describe_time_to_live()
            .table_name(&table)
            .send()
            .await
            .expect("describe ttl")
            .time_to_live_description
            .expect("ttl description");
        assert_eq!(ttl.attribute_name(), Some("ttl"));
        assert!(matches!(
            ttl.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ));
        assert_eq!(store.purge_expired().await.expect("purge"), 0);
    })
    .await;
}

/// The raw item of `key` in namespace `ns` of a one-shard store.
async fn raw_kv_item(
    store: &DynamoDbStore,
    ns: &str,
    key: &str,
) -> HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(format!("{}kv", store.config().table_prefix()))
        .key("pk", AttributeValue::S(format!("{ns}#0")))
        .key("sk", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("raw get")
        .item
        .expect("the item is stored")
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

/// `expire` and `persist` are one conditional UpdateItem each, refused or not, and leave the
/// value as it was; `get_with_ttl` and `get_stale` are one consistent GetItem, and a
/// `max_stale` longer than the store keeps is refused before any request. The native TTL
/// attribute is the deadline plus `keep_expired`, so DynamoDB keeps what `get_stale` may read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_changes_and_stale_reads_are_one_request_each() {
    let keep = Duration::from_secs(120);
    with_store_keeping(1, keep, |store, requests| async move {
        let value = vec![7u8; 1000];
        store.set("t", "k", &value, None).await.expect("set");
        requests.reset();
        let hour = Duration::from_secs(3600);
        assert!(store.expire("t", "k", hour).await.expect("expire"));
        assert_eq!(requests.of("UpdateItem"), 1, "{:?}", requests.counts());
        assert_eq!(requests.total(), 1, "{:?}", requests.counts());
        let item = raw_kv_item(&store, "t", "k").await;
        let exp = number(&item, "exp").expect("exp");
        let ttl = number(&item, "ttl").expect("ttl");
        assert_eq!(ttl, exp / 1000 + 1 + 120, "deadline (s) + 1 + keep_expired");
        assert_eq!(
            item.get("v"),
            Some(&AttributeValue::B(value.clone().into()))
        );

        requests.reset();
        assert!(store.persist("t", "k").await.expect("persist"));
        assert!(
            !store
                .expire("t", "missing", hour)
                .await
                .expect("expire missing")
        );
        assert_eq!(requests.of("UpdateItem"), 2, "{:?}", requests.counts());
        assert_eq!(requests.total(), 2, "{:?}", requests.counts());
        let item = raw_kv_item(&store, "t", "k").await;
        assert!(
            !item.contains_key("exp") && !item.contains_key("ttl"),
            "{item:?}"
        );

        requests.reset();
        let read = store
            .get_with_ttl("t", "k")
            .await
            .expect("read")
            .expect("live");
        assert_eq!((read.value.len(), read.ttl), (1000, Ttl::Never));
        let stale = store.get_stale("t", "k", keep).await.expect("stale read");
        assert!(stale.is_some());
        assert_eq!(requests.of("GetItem"), 2, "{:?}", requests.counts());
        assert_eq!(requests.total(), 2, "{:?}", requests.counts());

        requests.reset();
        let err = store
            .get_stale("t", "k", keep + Duration::from_secs(1))
            .await
            .expect_err("longer than kept");
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert_eq!(requests.total(), 0, "{:?}", requests.counts());

        // A new item with a TTL carries the kept time in its native TTL too.
        store
            .set("t", "short", b"s", Some(hour))
            .await
            .expect("set");
        let item = raw_kv_item(&store, "t", "short").await;
        let (exp, ttl) = (
            number(&item, "exp").expect("exp"),
            number(&item, "ttl").expect("ttl"),
        );
        assert_eq!(ttl, exp / 1000 + 1 + 120);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_numbers_that_read_as_digits() {
    with_store(16, |store, _requests| async move {
        assert_eq!(store.increment("c", "n", 5, None).await.expect("new"), 5);
        assert_eq!(
            store.get("c", "n").await.expect("get").as_deref(),
            Some(&b"5"[..])
        );
        // A counter can be compared and swapped by its digits, and then holds bytes again.
        assert!(
            store
                .compare_and_swap("c", "n", Some(b"5"), b"007", None)
                .await
                .expect("cas")
        );
        assert_eq!(store.increment("c", "n", 1, None).await.expect("incr"), 8);
        assert!(
            !store
                .compare_and_swap("c", "n", Some(b"08"), b"x", None)
                .await
                .expect("cas")
        );
        let err = store
            .increment("c", "n", i64::MAX, None)
            .await
            .expect_err("overflow");
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert_eq!(
            store
                .increment("c", "n", i64::MIN, None)
                .await
                .expect("min"),
            8 + i64::MIN
        );

        // Empty values are binary attributes like any other.
        store.set("c", "empty", b"", None).await.expect("set empty");
        assert!(
            store
                .compare_and_swap("c", "empty", Some(b""), b"full", None)
                .await
                .expect("cas from empty")
        );
        store.set("c", "empty", b"", None).await.expect("set empty");
        let err = store
            .increment("c", "empty", 1, None)
            .await
            .expect_err("not digits");
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn connect_from_a_url() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let url = format!("dynamodb://?endpoint={endpoint}&region=us-east-1&prefix=x_&id=int");
    let config = DynamoDbConfig::from_url(&url).expect("url");
    let store = DynamoDbStore::connect(&config).await.expect("connect");
    assert_eq!(store.config().table_prefix(), "x_");
    assert_eq!(UserStore::id_kind(&store), storekit_core::IdKind::Int);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_of_a_digit_value_convert_it_once() {
    with_store(16, |store, _requests| async move {
        store.set("c", "k", b"10", None).await.expect("set");
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.increment("c", "k", 1, None).await })
            })
            .collect();
        let mut results = HashSet::new();
        for task in tasks {
            results.insert(task.await.expect("task").expect("increment"));
        }
        assert_eq!(results, (11..=34).collect());
        assert_eq!(
            store.get("c", "k").await.expect("get").as_deref(),
            Some(&b"34"[..])
        );
    })
    .await;
}

/// The keys of the users table's items that belong to user `id`: those in its partition and
/// those naming it in `user_id` (claims, tokens), sorted.
async fn items_of(store: &DynamoDbStore, id: UserId) -> Vec<String> {
    let table = format!("{}users", store.config().table_prefix());
    let partition = format!("USER#{id}");
    let owner = id.to_string();
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(&table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            if text("pk").as_ref() == Some(&partition) || text("user_id").as_ref() == Some(&owner) {
                found.push(format!("{:?} {:?}", text("pk"), text("sk")));
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    found.sort();
    found
}

fn account(owner: &str, i: usize) -> NewOAuthAccount {
    NewOAuthAccount::new("github", format!("{owner}-{i:02}"), "someone@gh", "t")
}

/// A new user with `links` OAuth accounts (see [`account`]) and `tokens` access tokens, whose
/// secrets are returned.
async fn user_with(
    store: &DynamoDbStore,
    email: &str,
    links: usize,
    tokens: usize,
) -> (User, Vec<String>) {
    let user = store
        .create_user(NewUser::new(email, "h"))
        .await
        .expect("create_user");
    for i in 0..links {
        store
            .add_oauth_account(user.id, account(email, i))
            .await
            .expect("add_oauth_account");
    }
    let mut secrets = Vec::new();
    for _ in 0..tokens {
        let issued = store
            .create_access_token(user.id)
            .await
            .expect("create_access_token");
        secrets.push(issued.token);
    }
    assert_eq!(
        items_of(store, user.id).await.len(),
        2 + 2 * links + 2 * tokens,
        "user, email claim, and two items per link and per token"
    );
    (user, secrets)
}

async fn assert_tokens_gone(store: &DynamoDbStore, secrets: &[String]) {
    for secret in secrets {
        let token = store.get_access_token(secret, None).await.expect("get");
        assert!(token.is_none(), "a token of a deleted user: {token:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_with_links_and_tokens_is_one_query_and_one_transaction() {
    with_store(16, |store, requests| async move {
        let (other, _) = user_with(&store, "stays@example.com", 1, 1).await;
        let kept = items_of(&store, other.id).await;
        let (user, secrets) = user_with(&store, "gone@example.com", 3, 4).await;
        // Adding a link or a token stays one request.
        requests.reset();
        let last = store
            .create_access_token(user.id)
            .await
            .expect("create_access_token");
        store
            .add_oauth_account(user.id, account("gone@example.com", 3))
            .await
            .expect("add_oauth_account");
        assert_eq!(
            [requests.of("TransactWriteItems"), requests.total()],
            [2, 2],
            "{:?}",
            requests.counts()
        );
        let secrets = [secrets, vec![last.token]].concat();

        requests.reset();
        store.delete_user(user.id).await.expect("delete_user");
        assert_eq!(
            [
                requests.of("Query"),
                requests.of("TransactWriteItems"),
                requests.total()
            ],
            [1, 1, 2],
            "one Query of the partition finds the user and its items: {:?}",
            requests.counts()
        );
        assert_eq!(items_of(&store, user.id).await, Vec::<String>::new());
        assert_eq!(
            items_of(&store, other.id).await,
            kept,
            "the other user is untouched"
        );
        assert_tokens_gone(&store, &secrets).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_all_or_nothing_wherever_it_is_cut_off() {
    with_store(16, |store, requests| async move {
        let (user, secrets) = user_with(&store, "gone@example.com", 3, 5).await;
        let before = items_of(&store, user.id).await;
        requests.cut_after("Query");
        let outcome = store.delete_user(user.id).await;
        requests.restore();
        outcome.expect_err("the transaction cannot reach the server");
        assert_eq!(items_of(&store, user.id).await, before, "nothing deleted");
        for secret in &secrets {
            let token = store.get_access_token(secret, None).await.expect("get");
            assert!(token.is_some(), "the user's tokens still work");
        }

        // Its transaction is its last request: once it is sent, the delete is done.
        requests.cut_after("TransactWriteItems");
        let outcome = store.delete_user(user.id).await;
        requests.restore();
        outcome.expect("nothing follows the transaction");
        assert_eq!(items_of(&store, user.id).await, Vec::<String>::new());
        assert_tokens_gone(&store, &secrets).await;
        let heir = store
            .create_user(NewUser::new("heir@example.com", "h"))
            .await
            .expect("create_user");
        for i in 0..3 {
            store
                .add_oauth_account(heir.id, account("gone@example.com", i))
                .await
                .expect("the deleted user's accounts are free");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_tokens_added_after_a_delete_read_the_partition_fail_its_transaction() {
    with_store(16, |store, requests| async move {
        let (user, _) = user_with(&store, "gone@example.com", 1, 1).await;
        let added = Arc::new(Mutex::new(None));
        let (slot, other) = (added.clone(), store.clone());
        // Between the delete's Query and its transaction, another process adds a token and a
        // link: the Query did not see them, the transaction must not miss them.
        requests.reset();
        requests.before_next("TransactWriteItems", move || {
            let issued = run_elsewhere(&other, async move |other| {
                other
                    .add_oauth_account(user.id, account("late@example.com", 0))
                    .await
                    .expect("add_oauth_account");
                other.create_access_token(user.id).await
            });
            *lock(&slot) = Some(issued.expect("create_access_token").token);
        });
        store.delete_user(user.id).await.expect("delete_user");
        assert!(lock(&added).is_some(), "the hook ran");
        assert_eq!(
            [requests.of("Query"), requests.of("TransactWriteItems")],
            [2, 2],
            "the first transaction is refused, the partition read again: {:?}",
            requests.counts()
        );
        assert_eq!(items_of(&store, user.id).await, Vec::<String>::new());
        let late = lock(&added).take().into_iter().collect::<Vec<_>>();
        assert_tokens_gone(&store, &late).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_whose_claim_names_another_user_is_deleted_without_the_claim() {
    with_store(16, |store, requests| async move {
        let (user, _) = user_with(&store, "gone@example.com", 2, 1).await;
        let (other, _) = user_with(&store, "other@example.com", 0, 0).await;
        // Inconsistent data: the claim of one of the user's links names another user.
        let claim = format!(
            "OAUTH#6#github#{}",
            account("gone@example.com", 1).account_id
        );
        store
            .client()
            .put_item()
            .table_name(format!("{}users", store.config().table_prefix()))
            .item("pk", AttributeValue::S(claim))
            .item("sk", AttributeValue::S("OAUTH".to_owned()))
            .item("user_id", AttributeValue::S(other.id.to_string()))
            .send()
            .await
            .expect("put_item");
        requests.reset();
        store.delete_user(user.id).await.expect("delete_user");
        assert_eq!(
            [requests.of("Query"), requests.of("TransactWriteItems")],
            [2, 2],
            "refused on the claim, then done without it: {:?}",
            requests.counts()
        );
        assert_eq!(items_of(&store, user.id).await, Vec::<String>::new());
        let owner = store
            .get_user_by_oauth_account("github", &account("gone@example.com", 1).account_id)
            .await
            .expect("get_user_by_oauth_account");
        assert_eq!(owner.map(|u| u.id), Some(other.id), "the claim is kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_created_while_their_user_is_deleted_never_survive_it() {
    with_store(16, |store, _requests| async move {
        let store = Arc::new(store);
        for round in 0u64..20 {
            let (user, mut secrets) =
                user_with(&store, &format!("r{round}@example.com"), 1, 1).await;
            let creators: Vec<_> = (0..3)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut secrets = Vec::new();
                        for _ in 0..100 {
                            match store.create_access_token(user.id).await {
                                Ok(issued) => secrets.push(issued.token),
                                Err(Error::NotFound { what: "user" }) => break,
                                Err(err) => panic!("create_access_token: {err:?}"),
                            }
                        }
                        secrets
                    })
                })
                .collect();
            // Let the creators start, so that the delete races them rather than precedes them.
            tokio::time::sleep(Duration::from_millis((round % 4) * 5)).await;
            store.delete_user(user.id).await.expect("delete_user");
            for creator in creators {
                secrets.extend(creator.await.expect("creator"));
            }
            assert_eq!(
                items_of(&store, user.id).await,
                Vec::<String>::new(),
                "round {round}: nothing in the partition, no token naming the user"
            );
            assert_tokens_gone(&store, &secrets).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_and_tokens_added_during_a_delete_are_removed_too() {
    with_store(16, |store, _requests| async move {
        let (user, _) = user_with(&store, "busy@example.com", 2, 2).await;
        let store = Arc::new(store);
        // Writers add links and tokens until the user is gone; whatever they got in before
        // that must go with it.
        let writers: Vec<_> = (0..6)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut secrets = Vec::new();
                    for i in 0..200 {
                        let added = if writer % 2 == 0 {
                            let owner = format!("busy-{writer}");
                            store
                                .add_oauth_account(user.id, account(&owner, i))
                                .await
                                .map(drop)
                        } else {
                            store
                                .create_access_token(user.id)
                                .await
                                .map(|issued| secrets.push(issued.token))
                        };
                        match added {
                            Ok(()) => {}
                            Err(Error::NotFound { what: "user" }) => break,
                            Err(err) => panic!("writer {writer}: {err:?}"),
                        }
                    }
                    secrets
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.delete_user(user.id).await.expect("delete_user");
        let mut secrets = Vec::new();
        for writer in writers {
            secrets.extend(writer.await.expect("writer"));
        }
        assert_eq!(items_of(&store, user.id).await, Vec::<String>::new());
        assert_tokens_gone(&store, &secrets).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_more_than_one_transaction_holds_is_deleted_tokens_first() {
    with_store(16, |store, requests| async move {
        // 49 links and tokens fill one transaction with the user and its email claim.
        let (full, _) = user_with(&store, "full@example.com", 24, 25).await;
        requests.reset();
        store.delete_user(full.id).await.expect("delete_user");
        let writes = ["TransactWriteItems", "BatchWriteItem", "DeleteItem"].map(|w| requests.of(w));
        assert_eq!(writes, [1, 0, 0], "{:?}", requests.counts());
        assert_eq!(items_of(&store, full.id).await, Vec::<String>::new());

        // One more: the transaction holds the tokens and 24 links; the last link is deleted
        // after it.
        let (over, secrets) = user_with(&store, "over@example.com", 25, 25).await;
        requests.cut_after("TransactWriteItems");
        let outcome = store.delete_user(over.id).await;
        requests.restore();
        outcome.expect_err("the deletes after the transaction cannot reach the server");
        assert_tokens_gone(&store, &secrets).await;
        let left = items_of(&store, over.id).await;
        assert_eq!(left.len(), 2, "one link and its claim: {left:?}");
        // The claim left behind does not keep its account from another user.
        let heir = store
            .create_user(NewUser::new("heir@example.com", "h"))
            .await
            .expect("create_user");
        for i in 0..25 {
            store
                .add_oauth_account(heir.id, account("over@example.com", i))
                .await
                .expect("the deleted user's accounts are free");
        }
        assert_eq!(items_of(&store, over.id).await, Vec::<String>::new());

        // 60 links and tokens: the 11 links the transaction could not hold are deleted after it.
        let (big, secrets) = user_with(&store, "big@example.com", 30, 30).await;
        requests.reset();
        store.delete_user(big.id).await.expect("delete_user");
        let writes = ["TransactWriteItems", "BatchWriteItem", "DeleteItem"].map(|w| requests.of(w));
        assert_eq!(writes, [1, 1, 11], "{:?}", requests.counts());
        assert_eq!(
            requests.of("Query"),
            1,
            "the first Query found all of them: {:?}",
            requests.counts()
        );
        assert_eq!(items_of(&store, big.id).await, Vec::<String>::new());
        assert_tokens_gone(&store, &secrets).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_oauth_claim_does_not_block_its_account() {
    with_store(16, |store, requests| async move {
        // What a delete_user that died after its transaction left behind, for a user with more
        // links than its transaction held: a claim and a link of a user that is gone.
        let ghost = UserId::Uuid(uuid::Uuid::now_v7());
        let reference = "OAUTH#6#github#77";
        let table = format!("{}users", store.config().table_prefix());
        for (pk, sk) in [
            (reference.to_owned(), "OAUTH"),
            (format!("USER#{ghost}"), reference),
        ] {
            store
                .client()
                .put_item()
                .table_name(&table)
                .item("pk", AttributeValue::S(pk))
                .item("sk", AttributeValue::S(sk.to_owned()))
                .item("user_id", AttributeValue::S(ghost.to_string()))
                .send()
                .await
                .expect("put_item");
        }
        let alice = store
            .create_user(NewUser::new("alice@example.com", "h"))
            .await
            .expect("create_user");
        requests.reset();
        store
            .add_oauth_account(alice.id, NewOAuthAccount::new("github", "77", "a@gh", "t"))
            .await
            .expect("the orphaned claim gives way");
        assert_eq!(
            [requests.of("TransactWriteItems"), requests.of("GetItem")],
            [3, 1],
            "refused, the owner looked up, the orphan removed, accepted: {:?}",
            requests.counts()
        );
        assert_eq!(items_of(&store, ghost).await, Vec::<String>::new());
        let owner = store
            .get_user_by_oauth_account("github", "77")
            .await
            .expect("get_user_by_oauth_account");
        assert_eq!(owner.map(|u| u.id), Some(alice.id));

        // A claim of a user that exists still blocks.
        let bob = store
            .create_user(NewUser::new("bob@example.com", "h"))
            .await
            .expect("create_user");
        let err = store
            .add_oauth_account(bob.id, NewOAuthAccount::new("github", "77", "b@gh", "t"))
            .await
            .expect_err("taken by alice");
        assert!(
            matches!(
                err,
                Error::AlreadyExists {
                    what: "oauth account"
                }
            ),
            "{err:?}"
        );
        let owner = store
            .get_user_by_oauth_account("github", "77")
            .await
            .expect("get_user_by_oauth_account");
        assert_eq!(owner.map(|u| u.id), Some(alice.id));
    })
    .await;
}

/// `set_json` lays a document out as native attributes (what the AWS console and
/// `dynamodb-admin` show as a document) in one PutItem, while bytes stay `B`; a value no
/// document can hold stays its bytes; and a native map another client wrote reads back
/// through `get_json` and `get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_values_are_native_documents_and_bytes_stay_binary() {
    use serde_json::json;
    with_store(1, |store, requests| async move {
        let doc = json!({"name": "ada", "age": 36, "score": 0.5, "admin": true,
                         "boss": null, "tags": ["a", 1], "address": {"city": "Paris"}});
        requests.reset();
        store
            .set_json("j", "doc", &doc, None)
            .await
            .expect("set_json");
        assert_eq!(requests.of("PutItem"), 1, "{:?}", requests.counts());
        assert_eq!(requests.total(), 1, "{:?}", requests.counts());
        let item = raw_kv_item(&store, "j", "doc").await;
        let Some(AttributeValue::M(fields)) = item.get("v") else {
            panic!("not a native map: {item:?}");
        };
        let s = |text: &str| AttributeValue::S(text.to_owned());
        let n = |text: &str| AttributeValue::N(text.to_owned());
        let expected = HashMap::from([
            ("name".to_owned(), s("ada")),
            ("age".to_owned(), n("36")),
            ("score".to_owned(), n("0.5")),
            ("admin".to_owned(), AttributeValue::Bool(true)),
            ("boss".to_owned(), AttributeValue::Null(true)),
            ("tags".to_owned(), AttributeValue::L(vec![s("a"), n("1")])),
            (
                "address".to_owned(),
                AttributeValue::M(HashMap::from([("city".to_owned(), s("Paris"))])),
            ),
        ]);
        assert_eq!(fields, &expected);

        store.set_json("j", "n", &12, None).await.expect("set_json");
        assert_eq!(raw_kv_item(&store, "j", "n").await.get("v"), Some(&n("12")));
        store
            .set_json("j", "s", &"hi", None)
            .await
            .expect("set_json");
        assert_eq!(raw_kv_item(&store, "j", "s").await.get("v"), Some(&s("hi")));
        // DynamoDB would return `2.0` as `2`: kept as its bytes, it reads back as written.
        store
            .set_json("j", "two", &2.0, None)
            .await
            .expect("set_json");
        assert_eq!(
            raw_kv_item(&store, "j", "two").await.get("v"),
            Some(&AttributeValue::B(b"2.0".to_vec().into()))
        );
        store
            .set_json("j", "huge", &json!({"x": 1e300}), None)
            .await
            .expect("set_json");
        assert!(matches!(
            raw_kv_item(&store, "j", "huge").await.get("v"),
            Some(AttributeValue::B(_))
        ));
        // 30 levels of nesting are a document (DynamoDB's 32, less the item and one to
        // spare, as for a user's `extra`); 31 are bytes.
        let nested = |levels: usize| (1..levels).fold(json!([]), |inner, _| json!([inner]));
        store
            .set_json("j", "deep", &nested(30), None)
            .await
            .expect("set_json");
        assert!(matches!(
            raw_kv_item(&store, "j", "deep").await.get("v"),
            Some(AttributeValue::L(_))
        ));
        store
            .set_json("j", "deeper", &nested(31), None)
            .await
            .expect("set_json");
        assert!(matches!(
            raw_kv_item(&store, "j", "deeper").await.get("v"),
            Some(AttributeValue::B(_))
        ));
        let read: Option<serde_json::Value> = store.get_json("j", "deep").await.expect("get_json");
        assert_eq!(read, Some(nested(30)));
        // A swap of a document near the value limit sends it twice (as bytes and as a
        // document) besides the new value: DynamoDB takes that in one request.
        let big = json!({"text": "x".repeat(LIMITS.max_value_bytes - 20)});
        let big_json = serde_json::to_vec(&big).expect("to_vec");
        store
            .set_json("j", "big", &big, None)
            .await
            .expect("set_json");
        assert!(matches!(
            raw_kv_item(&store, "j", "big").await.get("v"),
            Some(AttributeValue::M(_))
        ));
        requests.reset();
        assert!(
            store
                .compare_and_swap("j", "big", Some(&big_json), &big_json, None)
                .await
                .expect("swap")
        );
        assert_eq!(requests.total(), 1, "{:?}", requests.counts());
        let bytes = serde_json::to_vec(&doc).expect("to_vec");
        store.set("j", "doc", &bytes, None).await.expect("set");
        assert_eq!(
            raw_kv_item(&store, "j", "doc").await.get("v"),
            Some(&AttributeValue::B(bytes.clone().into()))
        );

        // Another client's item: a native map with a float written as `5.0` and a string set.
        store
            .client()
            .put_item()
            .table_name(format!("{}kv", store.config().table_prefix()))
            .item("pk", s("j#0"))
            .item("sk", s("theirs"))
            .item(
                "v",
                AttributeValue::M(HashMap::from([
                    ("id".to_owned(), s("x1")),
                    ("weight".to_owned(), n("5.0")),
                    ("tags".to_owned(), AttributeValue::Ss(vec!["b".to_owned()])),
                    (
                        "nested".to_owned(),
                        AttributeValue::L(vec![AttributeValue::Null(true)]),
                    ),
                ])),
            )
            .send()
            .await
            .expect("raw put");
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Theirs {
            id: String,
            weight: f64,
            tags: Vec<String>,
            nested: Vec<Option<u8>>,
        }
        let theirs: Option<Theirs> = store.get_json("j", "theirs").await.expect("get_json");
        assert_eq!(
            theirs,
            Some(Theirs {
                id: "x1".into(),
                weight: 5.0,
                tags: vec!["b".into()],
                nested: vec![None],
            })
        );
        assert_eq!(
            store.get("j", "theirs").await.expect("get").as_deref(),
            Some(&br#"{"id":"x1","nested":[null],"tags":["b"],"weight":5}"#[..])
        );
        assert!(
            store
                .compare_and_swap(
                    "j",
                    "theirs",
                    Some(br#"{"weight":5.0,"id":"x1","nested":[null],"tags":["b"]}"#),
                    b"mine",
                    None
                )
                .await
                .map(|swapped| !swapped)
                .expect("swap"),
            "a string set is not a list"
        );
    })
    .await;
}
