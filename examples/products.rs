//! A FastAPI-style product service on storekit's key-value store, with typed JSON values:
//! create, read, update (without losing concurrent updates), delete, and list by name prefix,
//! newest update first.
//!
//! ```sh
//! cargo run --example products                       # ./storekit-products.db, http://127.0.0.1:3000
//! curl -s localhost:3000/products -H 'content-type: application/json' \
//!      -d '{"name": "Blue mug", "price_cents": 1200}'                 # {"id": 1, "version": 1, …}
//! curl -s -X PUT localhost:3000/products/1 -H 'content-type: application/json' \
//!      -d '{"price_cents": 990, "version": 1}'                        # 409 if it changed since
//! curl -s 'localhost:3000/products?name=blue'
//! ```
//!
//! # How the data is laid out
//!
//! - `products` / `ID` → the product as JSON, with a `version` that every write bumps. Updates
//!   are compare-and-swap on the exact bytes read, so two concurrent updates both land (the
//!   loser re-reads and re-applies), or, when the client names the version it read, the second
//!   gets `409 Conflict`.
//! - `products_by_name` / `NAME\u{1f}ID\u{1f}VERSION` → empty: a name index that
//!   `keys(namespace, prefix)` lists by name prefix. Every write adds the entry for the new
//!   version *before* swapping the product in, and removes the previous one after, so a product
//!   is always findable. An entry is current only if the product still has that version;
//!   entries of older versions (left by a crash or a lost race) are skipped and removed by
//!   listing. Versions only grow, so a removed entry can never be one a writer still needs.
//! - `products_meta` / `next_id` → an atomic counter that hands out ids.
//!
//! Environment: `DATABASE_URL` (any storekit URL; default an SQLite file), `PORT` (default 3000,
//! on 127.0.0.1; `0` picks a free port).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storekit::chrono::{DateTime, Utc};
use storekit::futures::TryStreamExt as _;
use storekit::{DynKvStore, Error, KvStoreExt as _};

const PRODUCTS: &str = "products";
const BY_NAME: &str = "products_by_name";
const META: &str = "products_meta";
/// Separates the parts of an index key; names may not contain control characters, so it
/// cannot appear in one.
const SEP: char = '\u{1f}';
/// Keeps an index key (name, two ids, separators) well under storekit's 512-byte key limit.
const MAX_NAME_BYTES: usize = 200;
const MAX_DESCRIPTION_BYTES: usize = 10_000;
/// Each failed compare-and-swap means another update succeeded, so with fewer concurrent
/// writers than this every update lands; past it the client is told to retry.
const MAX_ATTEMPTS: usize = 32;
const DEFAULT_LIMIT: usize = 50;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://storekit-products.db".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|e| format!("PORT={text:?}: {e}"))?,
        Err(_) => 3000,
    };
    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    say(format!(
        "products API on {} listening on http://{}",
        stores.backend(),
        listener.local_addr()?
    ));
    axum::serve(listener, app(stores.kv())).await?;
    Ok(())
}

/// The whole API over any key-value store.
fn app(kv: Arc<DynKvStore>) -> Router {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
        .with_state(kv)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    description: Option<String>,
    price_cents: u64,
    /// 1 when created, bumped by every update.
    version: u64,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct NewProduct {
    name: String,
    description: Option<String>,
    price_cents: u64,
}

/// The fields to change; absent ones are kept. With `version`, the update applies only if the
/// product still has that version.
#[derive(Debug, Deserialize)]
struct ProductUpdate {
    name: Option<String>,
    description: Option<String>,
    price_cents: Option<u64>,
    version: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// A name prefix, compared ignoring case; absent lists every product.
    name: Option<String>,
    limit: Option<usize>,
}

async fn create_product(
    State(kv): State<Arc<DynKvStore>>,
    Json(new): Json<NewProduct>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Product>), ApiError> {
    let name = check_name(&new.name)?;
    check_description(new.description.as_deref())?;
    let id = kv.increment(META, "next_id", 1, None).await?;
    let product = Product {
        id: u64::try_from(id).map_err(|_| ApiError::Internal("the id counter went negative"))?,
        name,
        description: new.description,
        price_cents: new.price_cents,
        version: 1,
        updated_at: storekit::now(),
    };
    // The index entry goes first: should the second write fail, listing skips an entry without
    // a product, whereas the other order could leave a product that listing never finds.
    kv.set(BY_NAME, &index_key(&product), b"", None).await?;
    // The id came from an atomic counter, so nothing else writes this key yet: a plain set.
    kv.set_json(PRODUCTS, &product.id.to_string(), &product, None)
        .await?;
    let location = format!("/products/{}", product.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(product),
    ))
}

async fn get_product(
    State(kv): State<Arc<DynKvStore>>,
    Path(id): Path<u64>,
) -> Result<Json<Product>, ApiError> {
    let product: Option<Product> = kv.get_json(PRODUCTS, &id.to_string()).await?;
    product.map(Json).ok_or(ApiError::NotFound)
}

async fn update_product(
    State(kv): State<Arc<DynKvStore>>,
    Path(id): Path<u64>,
    Json(update): Json<ProductUpdate>,
) -> Result<Json<Product>, ApiError> {
    let name = update.name.as_deref().map(check_name).transpose()?;
    check_description(update.description.as_deref())?;
    let key = id.to_string();
    for _ in 0..MAX_ATTEMPTS {
        let Some(stored) = kv.get(PRODUCTS, &key).await? else {
            return Err(ApiError::NotFound);
        };
        let current = decode(&stored)?;
        if let Some(expected) = update.version
            && expected != current.version
        {
            return Err(ApiError::VersionConflict {
                expected,
                actual: current.version,
            });
        }
        let next = Product {
            id: current.id,
            name: name.clone().unwrap_or_else(|| current.name.clone()),
            description: update
                .description
                .clone()
                .or_else(|| current.description.clone()),
            price_cents: update.price_cents.unwrap_or(current.price_cents),
            version: current.version + 1,
            updated_at: storekit::now().max(current.updated_at),
        };
        let bytes = serde_json::to_vec(&next).map_err(|_| ApiError::Internal("encoding"))?;
        kv.set(BY_NAME, &index_key(&next), b"", None).await?;
        // Swaps only if nobody wrote since our read; comparing the exact bytes (which hold the
        // version) makes this the optimistic-concurrency check.
        if kv
            .compare_and_swap(PRODUCTS, &key, Some(&stored), &bytes, None)
            .await?
        {
            // An older version's entry is never needed again, whoever else is writing.
            kv.delete(BY_NAME, &index_key(&current)).await?;
            return Ok(Json(next));
        }
        // Someone else updated it in between: read again and re-apply. Our index entry stays
        // (another writer may have written the same one); listing removes it if stale.
    }
    Err(ApiError::Busy)
}

async fn delete_product(
    State(kv): State<Arc<DynKvStore>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let key = id.to_string();
    let Some(stored) = kv.get(PRODUCTS, &key).await? else {
        return Err(ApiError::NotFound);
    };
    let product = decode(&stored)?;
    if !kv.delete(PRODUCTS, &key).await? {
        return Err(ApiError::NotFound);
    }
    // Ids are never reused, so entries left by a concurrent update are stale for good and
    // listing removes them.
    kv.delete(BY_NAME, &index_key(&product)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_products(
    State(kv): State<Arc<DynKvStore>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Product>>, ApiError> {
    let prefix = name_key(query.name.as_deref().unwrap_or(""));
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, 1000);

    // Every index entry under the prefix, grouped by product id. Sorting by update time needs
    // them all; a catalogue too large for that would keep a second index by time.
    let keys: Vec<String> = kv.keys(BY_NAME, &prefix).try_collect().await?;
    let mut entries: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
    for key in &keys {
        if let Some((name, id, version)) = parse_index_key(key) {
            entries
                .entry(id)
                .or_default()
                .push((name.to_owned(), version));
        }
    }
    let entries: Vec<(u64, Vec<(String, u64)>)> = entries.into_iter().collect();
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let values = kv.get_many(PRODUCTS, &id_refs).await?;

    let mut products = Vec::new();
    let mut stale = Vec::new();
    for (((_, index), id), value) in entries.iter().zip(&ids).zip(values) {
        let current = value.as_deref().map(decode).transpose()?;
        for (name, version) in index {
            match &current {
                Some(p) if *version == p.version && *name == name_key(&p.name) => {
                    products.push(p.clone());
                }
                // Written by an update still in flight: not current yet, and not ours to remove.
                Some(p) if *version > p.version => {}
                // Deleted product, older version, or the loser of a race for this version.
                _ => stale.push(join_index_key(name, id, *version)),
            }
        }
    }
    if !stale.is_empty() {
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        kv.delete_many(BY_NAME, &stale).await?;
    }
    products.sort_by_key(|p| Reverse((p.updated_at, p.id)));
    products.truncate(limit);
    Ok(Json(products))
}

/// The form of a name that the index stores and prefixes match: trimmed, lower case.
fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

fn index_key(product: &Product) -> String {
    join_index_key(
        &name_key(&product.name),
        &product.id.to_string(),
        product.version,
    )
}

fn join_index_key(name_key: &str, id: &str, version: u64) -> String {
    format!("{name_key}{SEP}{id}{SEP}{version}")
}

fn parse_index_key(key: &str) -> Option<(&str, u64, u64)> {
    let mut parts = key.rsplitn(3, SEP);
    let version = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    Some((parts.next()?, id, version))
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::Invalid("name must not be empty".to_owned()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ApiError::Invalid(format!(
            "name must be at most {MAX_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "name must not contain control characters".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

fn check_description(description: Option<&str>) -> Result<(), ApiError> {
    match description {
        Some(text) if text.len() > MAX_DESCRIPTION_BYTES => Err(ApiError::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

fn decode(bytes: &[u8]) -> Result<Product, ApiError> {
    serde_json::from_slice(bytes).map_err(|_| ApiError::Internal("a stored product is not JSON"))
}

/// Every way a request can fail, and (in `into_response`, the one place) its status code.
#[derive(Debug)]
enum ApiError {
    Store(Error),
    NotFound,
    Invalid(String),
    VersionConflict { expected: u64, actual: u64 },
    Busy,
    Internal(&'static str),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            Self::NotFound | Self::Store(Error::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "product not found".to_owned())
            }
            Self::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, why),
            Self::Store(e @ (Error::InvalidInput { .. } | Error::ValueTooLarge { .. })) => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            Self::VersionConflict { expected, actual } => (
                StatusCode::CONFLICT,
                format!("the product is at version {actual}, not {expected}: read it again"),
            ),
            Self::Store(e @ Error::Conflict { .. }) => (StatusCode::CONFLICT, e.to_string()),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many concurrent updates: try again".to_owned(),
            ),
            Self::Store(e) if e.is_retryable() => {
                log_error(chain(&e));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "try again later".to_owned(),
                )
            }
            Self::Store(e) => {
                log_error(chain(&e));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
            Self::Internal(what) => {
                log_error(what);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "detail": detail }))).into_response()
    }
}

#[allow(clippy::print_stdout)] // A server's start-up line is the point.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

/// Logs a server-side failure; the client only sees a status.
#[allow(clippy::print_stderr)] // An example without a logging framework: stderr is the log.
fn log_error(what: impl std::fmt::Display) {
    eprintln!("error: {what}");
}

/// An error and its sources, `outer: inner: …`, so that the log keeps the whole chain.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use serde_json::{Value, json};
    use storekit::futures::future::join_all;
    use tower::ServiceExt as _;

    use super::*;

    /// The app on a fresh SQLite file (the default backend), removed afterwards.
    struct TestApp {
        app: Router,
        kv: Arc<DynKvStore>,
        path: PathBuf,
    }

    impl TestApp {
        async fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "storekit-products-{name}-{}.db",
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
                app: app(stores.kv()),
                kv: stores.kv(),
                path,
            }
        }

        async fn call(
            &self,
            method: Method,
            uri: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            call(self.app.clone(), method, uri, body).await
        }

        async fn create(&self, name: &str, price_cents: u64) -> Value {
            let body = json!({ "name": name, "price_cents": price_cents });
            let (status, product) = self.call(Method::POST, "/products", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{product}");
            product
        }

        async fn names(&self, uri: &str) -> Vec<String> {
            let (status, list) = self.call(Method::GET, uri, None).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list.as_array()
                .expect("a list")
                .iter()
                .map(|p| p["name"].as_str().expect("a name").to_owned())
                .collect()
        }
    }

    /// Sends one request through the router, in-process, and reads the JSON answer.
    async fn call(
        app: Router,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = app
            .oneshot(request.body(body).expect("a valid request"))
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the body arrives");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    /// Sends `body` to `PUT uri` on its own task, so that several run truly in parallel.
    fn spawn_put(
        t: &TestApp,
        uri: &str,
        body: Value,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let (app, uri) = (t.app.clone(), uri.to_owned());
        tokio::spawn(async move { call(app, Method::PUT, &uri, Some(body)).await })
    }

    impl Drop for TestApp {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.path.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[tokio::test]
    async fn create_read_update_delete() {
        let t = TestApp::new("crud").await;
        let mug = t.create("Blue mug", 1200).await;
        assert_eq!((&mug["id"], &mug["version"]), (&json!(1), &json!(1)));
        assert!(mug["updated_at"].is_string(), "{mug}");

        let (status, read) = t.call(Method::GET, "/products/1", None).await;
        assert_eq!((status, &read), (StatusCode::OK, &mug));

        let change = json!({ "price_cents": 990, "version": 1 });
        let (status, updated) = t.call(Method::PUT, "/products/1", Some(change)).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(
            (&updated["price_cents"], &updated["name"]),
            (&json!(990), &json!("Blue mug"))
        );
        assert_eq!(updated["version"], 2);

        // The client read version 1, but it is now 2: refused, not silently overwritten.
        let stale = json!({ "price_cents": 1, "version": 1 });
        let (status, body) = t.call(Method::PUT, "/products/1", Some(stale)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        let (status, _) = t.call(Method::DELETE, "/products/1", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for method in [Method::GET, Method::DELETE] {
            assert_eq!(
                t.call(method, "/products/1", None).await.0,
                StatusCode::NOT_FOUND
            );
        }
        let missing = t.call(Method::PUT, "/products/7", Some(json!({}))).await;
        assert_eq!(missing.0, StatusCode::NOT_FOUND);
        assert!(t.names("/products").await.is_empty());
        // A new product never reuses a deleted id.
        assert_eq!(t.create("Plate", 500).await["id"], 2);
    }

    #[tokio::test]
    async fn invalid_input_is_refused() {
        let t = TestApp::new("invalid").await;
        for body in [
            json!({ "name": "  ", "price_cents": 1 }),
            json!({ "name": "a\u{1f}b", "price_cents": 1 }),
            json!({ "name": "x".repeat(201), "price_cents": 1 }),
            json!({ "name": "ok", "price_cents": -1 }),
            json!({ "price_cents": 1 }),
        ] {
            let (status, answer) = t.call(Method::POST, "/products", Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        }
        assert!(t.names("/products").await.is_empty());
    }

    #[tokio::test]
    async fn listing_by_name_is_newest_first_and_follows_renames() {
        let t = TestApp::new("list").await;
        let mug = t.create("Blue mug", 1200).await;
        t.create("Blue plate", 800).await;
        t.create("Red mug", 1100).await;
        assert_eq!(
            t.names("/products?name=blue").await,
            ["Blue plate", "Blue mug"]
        );
        assert_eq!(t.names("/products?name=BLUE%20M").await, ["Blue mug"]);
        assert_eq!(
            t.names("/products").await,
            ["Red mug", "Blue plate", "Blue mug"]
        );
        assert_eq!(t.names("/products?limit=1").await, ["Red mug"]);

        // An update moves the product to the front.
        let uri = format!("/products/{}", mug["id"]);
        let cheaper = json!({ "price_cents": 1000 });
        assert_eq!(
            t.call(Method::PUT, &uri, Some(cheaper)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            t.names("/products?name=blue").await,
            ["Blue mug", "Blue plate"]
        );

        // A rename leaves the old name's listing and joins the new one's.
        let renamed = json!({ "name": "Green mug" });
        assert_eq!(
            t.call(Method::PUT, &uri, Some(renamed)).await.0,
            StatusCode::OK
        );
        assert_eq!(t.names("/products?name=blue").await, ["Blue plate"]);
        assert_eq!(t.names("/products?name=green").await, ["Green mug"]);
        assert_eq!(t.names("/products?name=gr").await, ["Green mug"]);
        assert_eq!(
            t.names("/products").await,
            ["Green mug", "Red mug", "Blue plate"]
        );
        // One index entry per product remains.
        let entries: Vec<String> = t.kv.keys(BY_NAME, "").try_collect().await.expect("keys");
        assert_eq!(entries.len(), 3, "{entries:?}");
    }

    #[tokio::test]
    async fn stale_index_entries_are_skipped_and_removed() {
        let t = TestApp::new("stale").await;
        let mug = t.create("Blue mug", 1200).await;
        // What a crash between the index write and the swap leaves: entries of versions that
        // never became current, or were superseded.
        for stale in [
            "blue mug\u{1f}1\u{1f}0",
            "old name\u{1f}1\u{1f}1",
            "ghost\u{1f}99\u{1f}1",
        ] {
            t.kv.set(BY_NAME, stale, b"", None).await.expect("set");
        }
        // An update in flight (version 2 written to the index, product not yet swapped).
        t.kv.set(BY_NAME, "blue mug\u{1f}1\u{1f}2", b"", None)
            .await
            .expect("set");

        let (status, list) = t.call(Method::GET, "/products", None).await;
        assert_eq!((status, list), (StatusCode::OK, json!([mug])));
        let mut entries: Vec<String> = t.kv.keys(BY_NAME, "").try_collect().await.expect("keys");
        entries.sort();
        assert_eq!(
            entries,
            ["blue mug\u{1f}1\u{1f}1", "blue mug\u{1f}1\u{1f}2"]
        );
    }

    // Several worker threads, so that updates really interleave between read and swap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_updates_are_never_lost() {
        let t = TestApp::new("concurrent").await;
        t.create("Mug", 100).await;

        // Eight updates at once, without versions: every one is applied exactly once.
        let updates: Vec<_> = (0..8u64)
            .map(|i| spawn_put(&t, "/products/1", json!({ "price_cents": 200 + i })))
            .collect();
        for answer in join_all(updates).await {
            let (status, body) = answer.expect("the task ran");
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, mug) = t.call(Method::GET, "/products/1", None).await;
        assert_eq!(mug["version"], 9, "{mug}");

        // Two updates of different fields at once: both survive.
        let rename = spawn_put(&t, "/products/1", json!({ "name": "Big mug" }));
        let reprice = spawn_put(&t, "/products/1", json!({ "price_cents": 1 }));
        for answer in [rename.await, reprice.await] {
            assert_eq!(answer.expect("the task ran").0, StatusCode::OK);
        }
        let (_, mug) = t.call(Method::GET, "/products/1", None).await;
        assert_eq!(
            (&mug["name"], &mug["price_cents"]),
            (&json!("Big mug"), &json!(1))
        );

        // Two updates that both read version 11: exactly one wins.
        let first = spawn_put(
            &t,
            "/products/1",
            json!({ "price_cents": 2, "version": 11 }),
        );
        let second = spawn_put(
            &t,
            "/products/1",
            json!({ "price_cents": 3, "version": 11 }),
        );
        let mut statuses = [
            first.await.expect("the task ran").0,
            second.await.expect("the task ran").0,
        ];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
        assert_eq!(t.names("/products?name=big").await, ["Big mug"]);
        let entries: Vec<String> = t.kv.keys(BY_NAME, "").try_collect().await.expect("keys");
        assert!(!entries.is_empty(), "the index keeps the current entry");
    }
}
