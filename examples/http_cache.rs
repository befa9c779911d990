//! An HTTP client that caches in storekit, the role requests-cache plays for Python: a
//! `reqwest-middleware` client with `http-cache-reqwest`'s caching middleware, whose responses
//! are kept by [`storekit::http_cache::KvCacheManager`] in the key-value store of any backend.
//!
//! ```sh
//! cargo run --example http_cache --features http-cache          # ./storekit-http-cache.db
//! DATABASE_URL=memory:// cargo run --example http_cache --features http-cache
//! ```
//!
//! The example starts its own origin on a free loopback port (it counts the requests that reach
//! it), then shows what the middleware does with storekit underneath:
//!
//! - `/fresh` (`max-age=60`): the second `GET` is answered from storekit; the origin sees one.
//! - `/etag` (`no-cache` and an `ETag`): every `GET` is revalidated, the origin answers
//!   `304 Not Modified`, and the body comes from storekit.
//! - `/vary` (`Vary: accept-language`): a request in another language is not served the
//!   stored answer.
//! - `/short` (`max-age=1`) with the origin taken down: the stale answer is served, with
//!   `Warning: 111 Revalidation failed`, because the manager keeps entries for a grace period
//!   past their freshness.
//!
//! The HTTP semantics (freshness, validators, `Vary`) are the middleware's; storekit keeps the
//! entries, each with a TTL of its freshness plus the grace period, on every backend alike.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
use reqwest_middleware::ClientWithMiddleware;
use storekit::DynKvStore;
use storekit::http_cache::KvCacheManager;

/// How long an entry is kept past its freshness, for revalidation and stale answers.
const GRACE: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://storekit-http-cache.db".to_owned());
    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let kv = stores.kv();
    // The origin gets a new port every run, so earlier entries can never be hit again.
    kv.clear(storekit::http_cache::DEFAULT_NAMESPACE).await?;

    let origin = Origin::start().await?;
    say(format!(
        "cache on {}, origin at http://{}",
        stores.backend(),
        origin.address
    ));
    let client = caching_client(kv)?;
    for (path, language) in [
        ("/fresh", None),
        ("/fresh", None),
        ("/etag", None),
        ("/etag", None),
        ("/vary", Some("en")),
        ("/vary", Some("en")),
        ("/vary", Some("fr")),
        ("/short", None),
    ] {
        let answer = fetch(&client, &origin.url(path), language).await?;
        say(format!(
            "GET {path:<7} {:<3} {} {:?}  (origin answered {})",
            answer.status.as_u16(),
            answer.cache_status,
            answer.body,
            origin.hits(path)
        ));
    }
    origin.stop().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = fetch(&client, &origin.url("/short"), None).await?;
    say(format!(
        "GET /short  {:<3} {} {:?}  (the origin is down; warning: {:?})",
        answer.status.as_u16(),
        answer.cache_status,
        answer.body,
        answer.warning
    ));
    Ok(())
}

/// A reqwest client whose GETs go through the HTTP cache kept in `kv`.
fn caching_client(kv: Arc<DynKvStore>) -> Result<ClientWithMiddleware, reqwest::Error> {
    // No idle connections: a request after the origin went down must find it down.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let options = HttpCacheOptions {
        // `x-cache: HIT|MISS` on every answer, to show where it came from.
        cache_status_headers: true,
        ..HttpCacheOptions::default()
    };
    Ok(reqwest_middleware::ClientBuilder::new(http)
        .with(Cache(HttpCache {
            mode: CacheMode::Default,
            manager: KvCacheManager::new(kv).with_grace(GRACE),
            options,
        }))
        .build())
}

/// What the example shows of an answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// `HIT` (from storekit, revalidated or not) or `MISS`.
    cache_status: String,
    warning: Option<String>,
    body: String,
}

async fn fetch(
    client: &ClientWithMiddleware,
    url: &str,
    language: Option<&str>,
) -> Result<Answer, reqwest_middleware::Error> {
    let mut request = client.get(url);
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    let response = request.send().await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let (cache_status, warning) = (header("x-cache").unwrap_or_default(), header("warning"));
    Ok(Answer {
        status: response.status(),
        cache_status,
        warning,
        body: response.text().await?,
    })
}

/// How many requests reached each path.
type Hits = Arc<Mutex<HashMap<String, u64>>>;

/// The origin server, on a free loopback port.
#[derive(Debug)]
struct Origin {
    address: SocketAddr,
    hits: Hits,
    server: tokio::task::JoinHandle<()>,
}

impl Origin {
    async fn start() -> std::io::Result<Self> {
        let hits = Hits::default();
        let app = Router::new().fallback(serve).with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                log_error("origin", &e);
            }
        });
        Ok(Self {
            address,
            hits,
            server,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn hits(&self, path: &str) -> u64 {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        hits.get(path).copied().unwrap_or(0)
    }

    /// Takes the origin down: its port refuses connections from now on.
    async fn stop(&self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::task::yield_now().await;
        }
    }
}

async fn serve(State(hits): State<Hits>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    *hits
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.clone())
        .or_default() += 1;
    match path.as_str() {
        "/fresh" => (
            [(header::CACHE_CONTROL, "max-age=60")],
            "fresh for a minute",
        )
            .into_response(),
        "/etag" => {
            let validators = [
                (header::CACHE_CONTROL, "no-cache"),
                (header::ETAG, "\"v1\""),
            ];
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|tag| tag.as_bytes() == b"\"v1\"");
            if matches {
                (StatusCode::NOT_MODIFIED, validators).into_response()
            } else {
                (validators, "version one").into_response()
            }
        }
        "/vary" => {
            let language = headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("no language")
                .to_owned();
            let cache = [
                (header::CACHE_CONTROL, "max-age=60"),
                (header::VARY, "accept-language"),
            ];
            (cache, format!("in {language}")).into_response()
        }
        "/short" => ([(header::CACHE_CONTROL, "max-age=1")], "fresh for a second").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[allow(clippy::print_stdout)] // An example's output is the point.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

#[allow(clippy::print_stderr)] // An example without a logging framework: stderr is the log.
fn log_error(what: &str, error: &(dyn std::error::Error + 'static)) {
    eprintln!("error: {what}: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caching client on a fresh SQLite file and a fresh origin; the file is removed after.
    struct Setup {
        client: ClientWithMiddleware,
        origin: Origin,
        kv: Arc<DynKvStore>,
        file: std::path::PathBuf,
    }

    impl Setup {
        async fn new(name: &str) -> Self {
            let file = std::env::temp_dir().join(format!(
                "storekit-http-cache-{name}-{}.db",
                std::process::id()
            ));
            let stores = storekit::connect(&format!("sqlite://{}", file.display()))
                .await
                .expect("open");
            stores.migrate().await.expect("migrate");
            let kv = stores.kv();
            Self {
                client: caching_client(kv.clone()).expect("client"),
                origin: Origin::start().await.expect("origin"),
                kv,
                file,
            }
        }

        async fn get(&self, path: &str, language: Option<&str>) -> Answer {
            fetch(&self.client, &self.origin.url(path), language)
                .await
                .expect("answer")
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.file.display()));
            }
        }
    }

    #[tokio::test]
    async fn a_second_get_is_served_from_storekit_without_reaching_the_origin() {
        let setup = Setup::new("fresh").await;
        let first = setup.get("/fresh", None).await;
        assert_eq!(
            (first.cache_status.as_str(), first.body.as_str()),
            ("MISS", "fresh for a minute")
        );
        let second = setup.get("/fresh", None).await;
        assert_eq!(
            (second.cache_status.as_str(), second.body.as_str()),
            ("HIT", "fresh for a minute")
        );
        assert_eq!(setup.origin.hits("/fresh"), 1);
        let key = format!("GET:{}", setup.origin.url("/fresh"));
        assert!(
            setup
                .kv
                .contains("http-cache", &key)
                .await
                .expect("contains")
        );
    }

    #[tokio::test]
    async fn a_revalidation_is_answered_304_and_served_from_storekit() {
        let setup = Setup::new("etag").await;
        assert_eq!(setup.get("/etag", None).await.body, "version one");
        let again = setup.get("/etag", None).await;
        assert_eq!(
            (
                again.status.as_u16(),
                again.cache_status.as_str(),
                again.body.as_str()
            ),
            (200, "HIT", "version one")
        );
        // Both reached the origin; the second was answered 304 with no body.
        assert_eq!(setup.origin.hits("/etag"), 2);
    }

    #[tokio::test]
    async fn vary_keeps_languages_apart() {
        let setup = Setup::new("vary").await;
        assert_eq!(setup.get("/vary", Some("en")).await.body, "in en");
        assert_eq!(setup.get("/vary", Some("en")).await.cache_status, "HIT");
        assert_eq!(setup.get("/vary", Some("fr")).await.body, "in fr");
        assert_eq!(setup.origin.hits("/vary"), 2);
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_while_the_origin_is_down() {
        let setup = Setup::new("stale").await;
        assert_eq!(setup.get("/short", None).await.body, "fresh for a second");
        setup.origin.stop().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let stale = setup.get("/short", None).await;
        assert_eq!(
            (stale.status.as_u16(), stale.body.as_str()),
            (200, "fresh for a second")
        );
        let warning = stale.warning.unwrap_or_default();
        assert!(warning.starts_with("111"), "{warning}");
        assert_eq!(setup.origin.hits("/short"), 1);
    }
}
