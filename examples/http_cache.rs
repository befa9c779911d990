//! Caching HTTP responses in storekit's key-value store, each entry with its own TTL: the role
//! requests-cache plays for Python, as a small client wrapper.
//!
//! ```sh
//! cargo run --example http_cache                  # ./storekit-http-cache.db
//! DATABASE_URL=memory:// cargo run --example http_cache
//! ```
//!
//! The example starts its own origin server on a free loopback port (it counts the requests
//! that reach it), then shows a miss, a hit, an entry expiring after its `max-age`, and a
//! response that asks not to be stored.
//!
//! What [`CachingClient`] does: a `GET` whose answer is `200 OK` is stored under its URL with
//! the status, the headers worth replaying, and the body, for the `max-age` of its
//! `Cache-Control` (or a default TTL when there is none; never with `no-store`, `no-cache` or
//! `max-age=0`). The next `GET` of that URL, until the TTL runs out, is answered from the store
//! without touching the network. storekit never returns an expired entry, whichever backend is
//! underneath, so there is no expiry check here. A cache that fails (the database is down, a
//! body is too large for one value) only logs: the response still comes from the origin.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use storekit::{DynKvStore, Error, LIMITS};

/// The key-value namespace of cached responses.
const NAMESPACE: &str = "http_cache";
/// How long a response without `Cache-Control: max-age` is kept.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Headers that describe the body and so are replayed from the cache. Others (`Date`,
/// `Connection`, `Content-Length`, `Set-Cookie`, …) belong to one exchange and are dropped.
const KEPT_HEADERS: [&str; 5] = [
    "cache-control",
    "content-language",
    "content-type",
    "etag",
    "last-modified",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://storekit-http-cache.db".to_owned());
    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let kv = stores.kv();
    // The origin gets a new port every run, so earlier entries can never be hit again.
    kv.clear(NAMESPACE).await?;

    let origin = Origin::start().await?;
    let client = CachingClient::new(kv, DEFAULT_TTL)?;
    say(format!(
        "cache on {}, origin at http://{}",
        stores.backend(),
        origin.address
    ));
    demo(&client, &origin).await?;
    Ok(())
}

/// Fetches a few URLs twice or more and says where each answer came from.
async fn demo(client: &CachingClient, origin: &Origin) -> Result<(), reqwest::Error> {
    let get = async |path: &str| -> Result<(), reqwest::Error> {
        let response = client.get(&origin.url(path)).await?;
        say(format!(
            "GET {path:<10} {} {:<6} {:?}  (origin hits: {})",
            response.status,
            response.source.as_str(),
            String::from_utf8_lossy(&response.body),
            origin.hits(path),
        ));
        Ok(())
    };
    say("-- max-age=60: fetched once, then served from the cache");
    get("/greeting").await?;
    get("/greeting").await?;
    say("-- max-age=1: expires, then is fetched again");
    get("/clock").await?;
    get("/clock").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get("/clock").await?;
    say("-- no-store: never cached");
    get("/no-store").await?;
    get("/no-store").await?;
    Ok(())
}

/// A `GET` client that keeps answers in a key-value store for as long as they may be reused.
#[derive(Debug, Clone)]
struct CachingClient {
    http: reqwest::Client,
    kv: Arc<DynKvStore>,
    default_ttl: Duration,
}

/// An answer, from the origin or the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    /// The kept headers (see [`KEPT_HEADERS`]), names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Origin,
    Cache,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Cache => "cache",
        }
    }
}

/// What the store keeps of a response (the body in base64, since values are JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl CachingClient {
    fn new(kv: Arc<DynKvStore>, default_ttl: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // A proxy set in the environment must not see (or break) loopback traffic.
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            kv,
            default_ttl,
        })
    }

    /// `GET url`, from the cache while a stored answer lives, else from the origin.
    async fn get(&self, url: &str) -> Result<Response, reqwest::Error> {
        // URLs longer than a key can be are simply not cached.
        let cacheable_url = url.len() <= LIMITS.max_key_bytes;
        if cacheable_url && let Some(hit) = self.lookup(url).await {
            return Ok(hit);
        }
        let answer = self.http.get(url).send().await?;
        let status = answer.status().as_u16();
        let headers: Vec<(String, String)> = answer
            .headers()
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = answer.bytes().await?.to_vec();
        let response = Response {
            status,
            headers,
            body,
            source: Source::Origin,
        };
        if cacheable_url && let Some(ttl) = self.ttl(&response) {
            self.store(url, &response, ttl).await;
        }
        Ok(response)
    }

    /// How long `response` may be reused; `None` if it must not be stored.
    fn ttl(&self, response: &Response) -> Option<Duration> {
        if response.status != 200 {
            return None;
        }
        let Some((_, cache_control)) = response
            .headers
            .iter()
            .find(|(name, _)| name == "cache-control")
        else {
            return Some(self.default_ttl);
        };
        let mut ttl = Some(self.default_ttl);
        for directive in cache_control.split(',').map(str::trim) {
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            match name.to_ascii_lowercase().as_str() {
                // `no-cache` allows storing but demands revalidation on every use, which this
                // client does not do: not storing is the equivalent.
                "no-store" | "no-cache" => return None,
                "max-age" => {
                    // A malformed max-age makes the response stale (RFC 9111, 4.2.1).
                    let seconds: u64 = value.trim_matches('"').parse().unwrap_or(0);
                    ttl = (seconds > 0).then(|| Duration::from_secs(seconds));
                }
                _ => {}
            }
        }
        ttl
    }

    async fn lookup(&self, url: &str) -> Option<Response> {
        let bytes = match self.kv.get(NAMESPACE, url).await {
            Ok(found) => found?,
            Err(e) => {
                log_error("cache read", &e);
                return None;
            }
        };
        // An entry this version cannot read is a miss; the fresh answer replaces it.
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        Some(Response {
            status: entry.status,
            headers: entry.headers,
            body: BASE64.decode(entry.body).ok()?,
            source: Source::Cache,
        })
    }

    async fn store(&self, url: &str, response: &Response, ttl: Duration) {
        let entry = Entry {
            status: response.status,
            headers: response.headers.clone(),
            body: BASE64.encode(&response.body),
        };
        let stored = match serde_json::to_vec(&entry) {
            Ok(bytes) => self.kv.set(NAMESPACE, url, &bytes, Some(ttl)).await,
            Err(e) => Err(Error::invalid("value", e.to_string())),
        };
        match stored {
            Ok(()) => {}
            // Larger than one value may be, on every backend: such bodies are not cached.
            Err(Error::ValueTooLarge { .. }) => {}
            Err(e) => log_error("cache write", &e),
        }
    }
}

/// The example's own origin server on a free loopback port, counting the requests it serves.
#[derive(Debug)]
struct Origin {
    address: SocketAddr,
    hits: Hits,
}

type Hits = Arc<Mutex<HashMap<String, u64>>>;

impl Origin {
    /// Serves, on its own task until the program ends:
    /// `/greeting` (max-age=60), `/clock` (max-age=1, a new body every time), `/plain` (no
    /// Cache-Control), `/no-store`, and 404 elsewhere.
    async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let hits = Hits::default();
        let app = Router::new().fallback(serve).with_state(hits.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                log_error("origin server", &e);
            }
        });
        Ok(Self { address, hits })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// How many requests for `path` reached the origin.
    fn hits(&self, path: &str) -> u64 {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        hits.get(path).copied().unwrap_or(0)
    }
}

async fn serve(State(hits): State<Hits>, uri: Uri) -> impl IntoResponse {
    let path = uri.path();
    let count = {
        let mut hits = hits.lock().unwrap_or_else(PoisonError::into_inner);
        let count = hits.entry(path.to_owned()).or_default();
        *count += 1;
        *count
    };
    let (status, cache_control, body) = match path {
        "/greeting" => (StatusCode::OK, Some("max-age=60"), "hello".to_owned()),
        "/clock" => (StatusCode::OK, Some("max-age=1"), format!("tick {count}")),
        "/plain" => (StatusCode::OK, None, format!("plain {count}")),
        "/no-store" => (StatusCode::OK, Some("no-store"), format!("fresh {count}")),
        _ => (StatusCode::NOT_FOUND, None, "not found".to_owned()),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Some(value) = cache_control {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(value),
        );
    }
    // Per-exchange headers that the cache must not replay.
    headers.insert("x-served-count", header::HeaderValue::from(count));
    response
}

#[allow(clippy::print_stdout)] // An example's output is the point.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

/// Logs a failure with its whole source chain.
#[allow(clippy::print_stderr)] // An example without a logging framework: stderr is the log.
fn log_error(what: &str, error: &(dyn std::error::Error + 'static)) {
    let mut line = format!("{what}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    eprintln!("error: {line}");
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A cache on a fresh SQLite file (the default backend) and a fresh origin.
    struct Fixture {
        client: CachingClient,
        origin: Origin,
        path: PathBuf,
    }

    impl Fixture {
        async fn new(name: &str, default_ttl: Duration) -> Self {
            let path = std::env::temp_dir().join(format!(
                "storekit-http-cache-{name}-{}.db",
                std::process::id()
            ));
            // SQLite (the default backend) when compiled in; the reference store otherwise.
            let url = if cfg!(feature = "sqlite") {
                format!("sqlite://{}", path.display())
            } else {
                "memory://".to_owned()
            };
            let stores = storekit::connect(&url).await.expect("the store opens");
            stores.migrate().await.expect("the store migrates");
            Self {
                client: CachingClient::new(stores.kv(), default_ttl).expect("a client"),
                origin: Origin::start().await.expect("the origin listens"),
                path,
            }
        }

        async fn get(&self, path: &str) -> Response {
            let url = self.origin.url(path);
            self.client.get(&url).await.expect("the origin answers")
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.path.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[tokio::test]
    async fn a_second_get_is_answered_from_the_cache() {
        let f = Fixture::new("hit", DEFAULT_TTL).await;
        let first = f.get("/greeting").await;
        assert_eq!((first.status, first.source), (200, Source::Origin));
        assert_eq!(first.body, b"hello");
        let second = f.get("/greeting").await;
        assert_eq!(second.source, Source::Cache);
        assert_eq!(f.origin.hits("/greeting"), 1);
        // The same answer, with the headers worth keeping and none of the per-exchange ones.
        assert_eq!(
            (second.status, &second.headers, &second.body),
            (first.status, &first.headers, &first.body)
        );
        let mut names: Vec<&str> = first.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "content-type"]);
    }

    #[tokio::test]
    async fn an_entry_expires_after_its_max_age() {
        let f = Fixture::new("expiry", DEFAULT_TTL).await;
        assert_eq!(f.get("/clock").await.body, b"tick 1");
        let cached = f.get("/clock").await;
        assert_eq!(
            (cached.source, cached.body.as_slice()),
            (Source::Cache, &b"tick 1"[..])
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let refetched = f.get("/clock").await;
        assert_eq!(
            (refetched.source, refetched.body.as_slice()),
            (Source::Origin, &b"tick 2"[..])
        );
        assert_eq!(f.origin.hits("/clock"), 2);
    }

    #[tokio::test]
    async fn the_default_ttl_applies_without_cache_control() {
        let f = Fixture::new("default-ttl", Duration::from_secs(1)).await;
        assert_eq!(f.get("/plain").await.source, Source::Origin);
        assert_eq!(f.get("/plain").await.source, Source::Cache);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(f.get("/plain").await.body, b"plain 2");
    }

    #[tokio::test]
    async fn no_store_and_errors_are_not_cached() {
        let f = Fixture::new("no-store", DEFAULT_TTL).await;
        for path in ["/no-store", "/missing"] {
            for _ in 0..2 {
                assert_eq!(f.get(path).await.source, Source::Origin, "{path}");
            }
            assert_eq!(f.origin.hits(path), 2, "{path}");
        }
        assert_eq!(f.get("/missing").await.status, 404);
    }

    #[tokio::test]
    async fn cache_control_decides_the_ttl() {
        let f = Fixture::new("ttl", Duration::from_secs(7)).await;
        let ttl = |status: u16, cache_control: Option<&str>| {
            let headers = cache_control
                .map(|value| ("cache-control".to_owned(), value.to_owned()))
                .into_iter()
                .collect();
            let response = Response {
                status,
                headers,
                body: Vec::new(),
                source: Source::Origin,
            };
            f.client.ttl(&response)
        };
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(ttl(200, None), secs(7));
        assert_eq!(ttl(200, Some("public, max-age=300")), secs(300));
        assert_eq!(ttl(200, Some("Max-Age=\"5\"")), secs(5));
        assert_eq!(ttl(200, Some("private")), secs(7));
        for uncacheable in [
            "max-age=0",
            "max-age=soon",
            "no-store",
            "max-age=60, no-cache",
        ] {
            assert_eq!(ttl(200, Some(uncacheable)), None, "{uncacheable}");
        }
        assert_eq!(ttl(404, None), None);
    }

    #[tokio::test]
    async fn the_demo_runs() {
        let f = Fixture::new("demo", DEFAULT_TTL).await;
        demo(&f.client, &f.origin).await.expect("the demo runs");
        let hits = ["/greeting", "/clock", "/no-store"].map(|path| f.origin.hits(path));
        assert_eq!(hits, [1, 2, 2]);
    }
}
