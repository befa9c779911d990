//! `storekit::http_cache::KvCacheManager` under `http-cache-reqwest`'s middleware, against an
//! origin on a loopback socket, on every backend: a fresh response served from the store
//! without reaching the origin, a revalidation answered 304, `Vary`, a stale response while
//! the origin is down, a response over the value limit passed through uncached, and the TTL
//! the entries get.

#![allow(clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
use storekit::http_cache::KvCacheManager;
use storekit::{KvStore, MemoryStore, Stores, Ttl};

/// How many requests each route of the origin answered.
#[derive(Default)]
struct Hits {
    fresh: AtomicUsize,
    etag: AtomicUsize,
    not_modified: AtomicUsize,
    vary: AtomicUsize,
    big: AtomicUsize,
    short: AtomicUsize,
}

/// Serves the origin on a loopback port; returns its URL and the task to abort to take it down.
async fn origin(hits: Arc<Hits>) -> (String, tokio::task::JoinHandle<()>) {
    let (h1, h2, h3, h4, h5) = (
        hits.clone(),
        hits.clone(),
        hits.clone(),
        hits.clone(),
        hits.clone(),
    );
    let app = Router::new()
        .route(
            "/fresh",
            get(move || async move {
                let n = h1.fresh.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    [(header::CACHE_CONTROL, "max-age=60")],
                    format!("fresh {n}"),
                )
            }),
        )
        .route(
            "/etag",
            get(move |headers: HeaderMap| async move {
                h2.etag.fetch_add(1, Ordering::SeqCst);
                let cache = [
                    (header::CACHE_CONTROL, "no-cache"),
                    (header::ETAG, "\"v1\""),
                ];
                if headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|tag| tag == "\"v1\"")
                {
                    h2.not_modified.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::NOT_MODIFIED, cache, String::new()).into_response();
                }
                (cache, "version one".to_owned()).into_response()
            }),
        )
        .route(
            "/vary",
            get(move |headers: HeaderMap| async move {
                h3.vary.fetch_add(1, Ordering::SeqCst);
                let language = headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                (
                    [
                        (header::CACHE_CONTROL, "max-age=60"),
                        (header::VARY, "accept-language"),
                    ],
                    format!("in {language}"),
                )
            }),
        )
        .route(
            "/big",
            get(move || async move {
                h4.big.fetch_add(1, Ordering::SeqCst);
                ([(header::CACHE_CONTROL, "max-age=60")], vec![b'x'; 500_000])
            }),
        )
        .route(
            "/short",
            get(move || async move {
                h5.short.fetch_add(1, Ordering::SeqCst);
                ([(header::CACHE_CONTROL, "max-age=1")], "short-lived")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), server)
}

fn client(manager: KvCacheManager) -> reqwest_middleware::ClientWithMiddleware {
    // No idle connections: once the origin is down, every request must find it down.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    reqwest_middleware::ClientBuilder::new(http)
        .with(Cache(HttpCache {
            mode: CacheMode::Default,
            manager,
            options: HttpCacheOptions::default(),
        }))
        .build()
}

async fn fetch(
    client: &reqwest_middleware::ClientWithMiddleware,
    url: &str,
    language: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = client.get(url);
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    let response = request.send().await.expect("request");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_str().as_bytes()),
            header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

async fn exercise(stores: &Stores) {
    let kv = stores.kv();
    let hits = Arc::new(Hits::default());
    let (base, server) = origin(hits.clone()).await;
    let grace = Duration::from_secs(30);
    let client = client(KvCacheManager::new(kv.clone()).with_grace(grace));

    // Fresh: the second GET is served from the store; the entry lives max-age plus grace.
    let (status, _, body) = fetch(&client, &format!("{base}/fresh"), None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"fresh 1"[..]));
    let (_, _, body) = fetch(&client, &format!("{base}/fresh"), None).await;
    assert_eq!(body, b"fresh 1");
    assert_eq!(
        hits.fresh.load(Ordering::SeqCst),
        1,
        "not sent to the origin"
    );
    let key = format!("GET:{base}/fresh");
    let entry = kv
        .get_with_ttl("http-cache", &key)
        .await
        .expect("read")
        .expect("stored under the middleware's key");
    match entry.ttl {
        Ttl::Remaining(left) => assert!(
            left > Duration::from_secs(80) && left <= Duration::from_secs(90),
            "60 s of freshness + 30 s of grace: {left:?}"
        ),
        other => panic!("{other:?}"),
    }

    // Revalidated: the origin answers 304 and the stored body is served.
    let (_, _, body) = fetch(&client, &format!("{base}/etag"), None).await;
    assert_eq!(body, b"version one");
    let (status, _, body) = fetch(&client, &format!("{base}/etag"), None).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"version one"[..])
    );
    assert_eq!(hits.etag.load(Ordering::SeqCst), 2);
    assert_eq!(hits.not_modified.load(Ordering::SeqCst), 1, "answered 304");

    // Vary: a request with another language is not served the stored one.
    let url = format!("{base}/vary");
    assert_eq!(fetch(&client, &url, Some("en")).await.2, b"in en");
    assert_eq!(fetch(&client, &url, Some("en")).await.2, b"in en");
    assert_eq!(hits.vary.load(Ordering::SeqCst), 1);
    assert_eq!(fetch(&client, &url, Some("fr")).await.2, b"in fr");
    assert_eq!(hits.vary.load(Ordering::SeqCst), 2);

    // Over the value limit: passed through, never stored, never an error.
    for _ in 0..2 {
        let (status, _, body) = fetch(&client, &format!("{base}/big"), None).await;
        assert_eq!((status, body.len()), (StatusCode::OK, 500_000));
    }
    assert_eq!(hits.big.load(Ordering::SeqCst), 2);
    assert!(
        !kv.contains("http-cache", &format!("GET:{base}/big"))
            .await
            .expect("contains")
    );

    // Stale while the origin is down: the stored response, with the 111 warning.
    assert_eq!(
        fetch(&client, &format!("{base}/short"), None).await.2,
        b"short-lived"
    );
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, headers, body) = fetch(&client, &format!("{base}/short"), None).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"short-lived"[..])
    );
    let warning = headers
        .get(header::WARNING)
        .map(|w| w.to_str().unwrap_or_default().to_owned());
    assert!(
        warning.as_deref().is_some_and(|w| w.starts_with("111")),
        "{warning:?}"
    );
    assert_eq!(hits.short.load(Ordering::SeqCst), 1);

    // The manager on its own: delete, and an entry it cannot read is a miss.
    use http_cache::CacheManager as _;
    let manager = KvCacheManager::new(kv.clone());
    assert!(manager.get(&key).await.expect("get").is_some());
    manager.delete(&key).await.expect("delete");
    assert!(manager.get(&key).await.expect("get").is_none());
    kv.set("http-cache", "GET:garbled", b"\xff\xff", None)
        .await
        .expect("set");
    assert!(manager.get("GET:garbled").await.expect("a miss").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_cache_on_memory() {
    exercise(&Stores::from(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_cache_on_sqlite() {
    let stores = common::open(&common::sqlite_url("http-cache")).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_cache_on_postgres() {
    let Some(url) = common::postgres_url("httpcache") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_cache_on_dynamodb() {
    let Some(url) = common::dynamodb_url("httpcache") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}
