//! The product catalogue service on storekit's tables: create, read, update (without losing
//! concurrent updates), delete, and list the products of one name, newest update first.
//!
//! ```sh
//! cargo run --example products                       # ./storekit-products.db, http://127.0.0.1:3000
//! curl -s localhost:3000/products -H 'content-type: application/json' \
//!      -d '{"name": "Blue mug", "price_cents": 1200}'          # {"id": "0193…", "version": 1, …}
//! curl -s -X PUT localhost:3000/products/ID -H 'content-type: application/json' \
//!      -d '{"price_cents": 990, "version": 1}'                 # 409 if it changed since
//! curl -si 'localhost:3000/products?name=Blue%20mug&limit=10'  # next page: `next-cursor` header
//! ```
//!
//! The table is the catalogue's own: a UUID `id`, and the `product-name-index` on `name` and
//! `updated_at` (fractional epoch seconds), which on DynamoDB is a native GSI, so a table made
//! by the catalogue's Terraform and filled by its PynamoDB model is adopted as it is. Versions,
//! the index and its consistency are the store's business; this file is the schema, the record
//! type and the handlers.
//!
//! Environment: `DATABASE_URL` (any storekit URL; default an SQLite file), `PORT` (default 3000,
//! on 127.0.0.1; `0` picks a free port).
//!
//! The catalogue's Terraform and CloudFormation come from the same schema, so the table the
//! service expects and the table the infrastructure makes cannot disagree:
//!
//! ```sh
//! cargo run --example products --features dynamodb -- export infra/   # products.tf, products.cfn.json
//! ```

use std::net::Ipv4Addr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storekit::table::{self, RecordType as _, Table, Versioned};
use storekit::uuid::Uuid;
use storekit::{Error, Record, Stores};

const MAX_NAME_BYTES: usize = 200;
const MAX_DESCRIPTION_BYTES: usize = 10_000;
const DEFAULT_LIMIT: usize = 50;
/// The header that carries the cursor of the next page of a listing.
const NEXT_CURSOR: &str = "next-cursor";

/// A product, and the catalogue's table as its Terraform declares it: `product-table`, opened
/// by that name (`exact_name`: no store prefix), hash key `id` (a UUID: text), and the GSI
/// `product-name-index` on `name` (text) and `updated_at` (a float), projecting `INCLUDE` of
/// the price. The derive checks the fields and picks the key types from theirs, and gives
/// `Product::key(id)` and `Product::query_product_name_index(name)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[storekit(
    table = "product-table",
    exact_name,
    partition = id,
    index(
        name = "product-name-index",
        partition = name,
        sort = updated_at,
        projection = INCLUDE(price_cents),
    ),
)]
struct Product {
    id: Uuid,
    name: String,
    description: Option<String>,
    price_cents: u64,
    /// Seconds since the epoch, as the catalogue's existing items keep it (`time.time()`).
    updated_at: f64,
}

/// A product as the API shows it: with the version every write bumps.
#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    product: Product,
    version: u64,
}

impl From<Versioned<Product>> for Shown {
    fn from(v: Versioned<Product>) -> Self {
        Self {
            product: v.record,
            version: v.version,
        }
    }
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
    /// Lists the products of this name, newest first; without it, every product, a page at a
    /// time in the store's order.
    name: Option<String>,
    limit: Option<usize>,
    /// The `next-cursor` of the previous page.
    after: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, dir] = args.as_slice()
        && command == "export"
    {
        for file in export(std::path::Path::new(dir))? {
            say(format!("wrote {}", file.display()));
        }
        return Ok(());
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://storekit-products.db".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|e| format!("PORT={text:?}: {e}"))?,
        Err(_) => 3000,
    };
    let stores = storekit::connect(&url).await?;
    let products = open(&stores).await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    say(format!(
        "products API on {} listening on http://{}",
        stores.backend(),
        listener.local_addr()?
    ));
    axum::serve(listener, app(products)).await?;
    Ok(())
}

/// Writes the catalogue table's Terraform (`products.tf`) and CloudFormation template
/// (`products.cfn.json`) into `dir`, rendered from [`Product`]'s schema, with the marker table
/// storekit
/// keeps catalog items in.
#[cfg(feature = "dynamodb")]
fn export(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, Box<dyn std::error::Error>> {
    let schema = Product::schema();
    std::fs::create_dir_all(dir)?;
    let files = [
        (
            dir.join("products.tf"),
            storekit::schema::terraform(&[&schema])?,
        ),
        (
            dir.join("products.cfn.json"),
            storekit::schema::cloudformation(&[&schema])?,
        ),
    ];
    for (path, text) in &files {
        std::fs::write(path, text)?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

#[cfg(not(feature = "dynamodb"))]
fn export(_dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, Box<dyn std::error::Error>> {
    Err("exporting Terraform needs the dynamodb feature: cargo run --example products --features dynamodb -- export DIR".into())
}

/// The products table, created (or checked against the schema) on the way.
async fn open(stores: &Stores) -> storekit::Result<Table<Product>> {
    let products = Product::table(stores.tables());
    products.ensure().await?;
    Ok(products)
}

/// The whole API over the products table of any store.
fn app(products: Table<Product>) -> Router {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
        .with_state(products)
}

type Products = State<Table<Product>>;

async fn create_product(
    State(products): Products,
    Json(new): Json<NewProduct>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Shown>), ApiError> {
    let product = Product {
        id: Uuid::now_v7(),
        name: check_name(&new.name)?,
        description: check_description(new.description)?,
        price_cents: new.price_cents,
        updated_at: epoch_seconds(),
    };
    let created = products.insert(&product).await?;
    let location = format!("/products/{}", product.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created.into()),
    ))
}

async fn get_product(
    State(products): Products,
    Path(id): Path<Uuid>,
) -> Result<Json<Shown>, ApiError> {
    let found = products
        .get(Product::key(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(found.into()))
}

async fn update_product(
    State(products): Products,
    Path(id): Path<Uuid>,
    Json(update): Json<ProductUpdate>,
) -> Result<Json<Shown>, ApiError> {
    let name = update.name.as_deref().map(check_name).transpose()?;
    let description = check_description(update.description)?;
    let apply = |p: &mut Product| {
        if let Some(name) = &name {
            p.name.clone_from(name);
        }
        if description.is_some() {
            p.description.clone_from(&description);
        }
        p.price_cents = update.price_cents.unwrap_or(p.price_cents);
        // Never earlier than before, so the newest-first order follows the writes.
        p.updated_at = epoch_seconds().max(p.updated_at);
    };
    let updated = match update.version {
        // The client names the version it read: one write at that version, or 409.
        Some(version) => {
            let mut product = products
                .get(Product::key(id))
                .await?
                .ok_or(ApiError::NotFound)?
                .record;
            apply(&mut product);
            products.replace(&product, version).await?
        }
        // Otherwise the store re-reads and re-applies until the update lands.
        None => {
            products
                .update::<Error>(Product::key(id), |p| {
                    apply(p);
                    Ok(())
                })
                .await?
        }
    };
    Ok(Json(updated.into()))
}

async fn delete_product(
    State(products): Products,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if products.delete(Product::key(id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn list_products(
    State(products): Products,
    Query(list): Query<ListQuery>,
) -> Result<(HeaderMap, Json<Vec<Shown>>), ApiError> {
    let limit = list
        .limit
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, table::MAX_PAGE);
    let page = match list.name {
        Some(name) => {
            // Verified: on DynamoDB the index is eventually consistent, so a product renamed a
            // moment ago is re-read and left out rather than listed under its old name. The
            // index holds only names, prices and times: the listing shows whole products,
            // which the verified re-read reads anyway.
            let mut query = Product::query_product_name_index(name.trim())
                .descending()
                .limit(limit)
                .verified()
                .whole_records();
            if let Some(after) = list.after {
                query = query.after(after);
            }
            products.query(query).await?
        }
        None => {
            let mut scan = table::Scan::new().limit(limit);
            if let Some(after) = list.after {
                scan = scan.after(after);
            }
            products.scan(scan).await?
        }
    };
    let mut headers = HeaderMap::new();
    if let Some(next) = page.next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert(NEXT_CURSOR, next);
    }
    Ok((
        headers,
        Json(page.items.into_iter().map(Shown::from).collect()),
    ))
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "a name is 1 to {MAX_NAME_BYTES} bytes of printable text"
        )));
    }
    Ok(name.to_owned())
}

fn check_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.len() > MAX_DESCRIPTION_BYTES => Err(ApiError::Invalid(format!(
            "a description is at most {MAX_DESCRIPTION_BYTES} bytes"
        ))),
        d => Ok(d),
    }
}

fn epoch_seconds() -> f64 {
    let now = storekit::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}

/// Every way a request can fail, and (in `into_response`, the one place) its status code.
#[derive(Debug)]
enum ApiError {
    Store(Error),
    NotFound,
    Invalid(String),
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
            Self::Store(Error::Conflict {
                expected, actual, ..
            }) => (
                StatusCode::CONFLICT,
                format!("the product is at version {actual}, not {expected}: read it again"),
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
    use axum::body::Body;
    use axum::http::{Method, Request};
    use std::sync::Arc;

    use serde_json::{Value, json};
    use storekit::futures::future::join_all;
    use tower::ServiceExt as _;

    use super::*;

    /// The app on one backend, with its table dropped afterwards.
    struct TestApp {
        app: Router,
        products: Table<Product>,
        backend: String,
        /// `product-table` is opened by its own name, so every test's store on one server
        /// shares it: the tests take turns, each on a table of its own making.
        _turn: Arc<tokio::sync::OwnedMutexGuard<()>>,
    }

    static TURNS: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(Arc::default);

    /// Every backend this build and environment can reach: memory and SQLite always,
    /// PostgreSQL and DynamoDB Local from `STOREKIT_POSTGRES_URL` and
    /// `STOREKIT_DYNAMODB_ENDPOINT` (`eval "$(scripts/services.sh up)"`); without them a loud
    /// skip, or a failure when `CI` is set.
    async fn apps(test: &str) -> Vec<TestApp> {
        let prefix = format!("products_{test}_{:x}_", std::process::id());
        let mut urls = vec!["memory://".to_owned()];
        if cfg!(feature = "sqlite") {
            let path = std::env::temp_dir().join(format!("storekit-{prefix}.db"));
            let _ = std::fs::remove_file(&path);
            urls.push(format!("sqlite://{}", path.display()));
        }
        if cfg!(feature = "postgres")
            && let Some(server) = server("STOREKIT_POSTGRES_URL")
        {
            let separator = if server.contains('?') { '&' } else { '?' };
            urls.push(format!("{server}{separator}prefix={prefix}"));
        }
        if cfg!(feature = "dynamodb")
            && let Some(endpoint) = server("STOREKIT_DYNAMODB_ENDPOINT")
        {
            urls.push(format!(
                "dynamodb://?endpoint={endpoint}&region=us-east-1&prefix={prefix}"
            ));
        }
        let turn = Arc::new(Arc::clone(&TURNS).lock_owned().await);
        let mut apps = Vec::new();
        for url in urls {
            let stores = storekit::connect(&url).await.expect("the store connects");
            // A table an earlier test or run left behind is dropped first: each test starts
            // on an empty table.
            open(&stores).await.expect("the table is ensured");
            Product::table(stores.tables())
                .drop()
                .await
                .expect("a leftover table drops");
            let products = open(&stores).await.expect("the table is ensured");
            apps.push(TestApp {
                app: app(products.clone()),
                products,
                backend: stores.backend().to_owned(),
                _turn: Arc::clone(&turn),
            });
        }
        apps
    }

    #[allow(clippy::print_stderr)] // A skip must be loud.
    fn server(var: &str) -> Option<String> {
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Some(value),
            _ if std::env::var_os("CI").is_some() => {
                panic!("{var} is not set and CI is: run `eval \"$(scripts/services.sh up)\"` first")
            }
            _ => {
                eprintln!("SKIPPED: products on {var}: not set");
                None
            }
        }
    }

    impl TestApp {
        async fn call(
            &self,
            method: Method,
            uri: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let (status, _, body) = call(self.app.clone(), method, uri, body).await;
            (status, body)
        }

        async fn create(&self, name: &str, price_cents: u64) -> Value {
            let body = json!({ "name": name, "price_cents": price_cents });
            let (status, product) = self.call(Method::POST, "/products", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{}: {product}", self.backend);
            product
        }

        /// The prices listed under `name`, newest first, following every page of `limit`.
        async fn listed(&self, name: &str, limit: usize) -> Vec<u64> {
            let mut prices = Vec::new();
            let mut uri = format!("/products?name={}&limit={limit}", name.replace(' ', "%20"));
            loop {
                let (status, headers, list) = call(self.app.clone(), Method::GET, &uri, None).await;
                assert_eq!(status, StatusCode::OK, "{list}");
                let items = list.as_array().expect("a list");
                prices.extend(
                    items
                        .iter()
                        .map(|p| p["price_cents"].as_u64().expect("a price")),
                );
                match headers.get(NEXT_CURSOR).and_then(|c| c.to_str().ok()) {
                    Some(cursor) => {
                        assert_eq!(items.len(), limit, "only the last page is short");
                        uri = format!(
                            "/products?name={}&limit={limit}&after={cursor}",
                            name.replace(' ', "%20")
                        );
                    }
                    None => return prices,
                }
            }
        }

        /// Lists `name` until `done` accepts it: index reads are eventual on DynamoDB.
        async fn settled(
            &self,
            name: &str,
            limit: usize,
            done: impl Fn(&[u64]) -> bool,
        ) -> Vec<u64> {
            for _ in 0..200 {
                let prices = self.listed(name, limit).await;
                if done(&prices) {
                    return prices;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            self.listed(name, limit).await
        }

        async fn drop(self) {
            self.products.drop().await.expect("the table drops");
        }
    }

    /// Sends one request through the router, in-process, and reads the JSON answer.
    async fn call(
        app: Router,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = app
            .oneshot(request.body(body).expect("a valid request"))
            .await
            .expect("the router is infallible");
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the body arrives");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    fn spawn_put(
        t: &TestApp,
        uri: &str,
        body: Value,
    ) -> tokio::task::JoinHandle<(StatusCode, HeaderMap, Value)> {
        let (app, uri) = (t.app.clone(), uri.to_owned());
        tokio::spawn(async move { call(app, Method::PUT, &uri, Some(body)).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn create_read_update_delete() {
        for t in apps("crud").await {
            let mug = t.create("Blue mug", 1200).await;
            assert_eq!(mug["version"], 1);
            assert!(mug["updated_at"].is_number(), "{mug}");
            let uri = format!("/products/{}", mug["id"].as_str().expect("an id"));

            let (status, read) = t.call(Method::GET, &uri, None).await;
            assert_eq!((status, &read), (StatusCode::OK, &mug), "{}", t.backend);

            let change = json!({ "price_cents": 990, "version": 1 });
            let (status, updated) = t.call(Method::PUT, &uri, Some(change)).await;
            assert_eq!(status, StatusCode::OK, "{updated}");
            assert_eq!(
                (
                    &updated["price_cents"],
                    &updated["name"],
                    &updated["version"]
                ),
                (&json!(990), &json!("Blue mug"), &json!(2))
            );

            // The client read version 1, but it is now 2: refused, not silently overwritten.
            let stale = json!({ "price_cents": 1, "version": 1 });
            let (status, body) = t.call(Method::PUT, &uri, Some(stale)).await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");

            let (status, _) = t.call(Method::DELETE, &uri, None).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            for method in [Method::GET, Method::DELETE] {
                assert_eq!(t.call(method, &uri, None).await.0, StatusCode::NOT_FOUND);
            }
            let missing = format!("/products/{}", Uuid::now_v7());
            assert_eq!(
                t.call(Method::PUT, &missing, Some(json!({}))).await.0,
                StatusCode::NOT_FOUND
            );
            t.drop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn invalid_input_is_refused() {
        for t in apps("invalid").await {
            for body in [
                json!({ "name": "  ", "price_cents": 1 }),
                json!({ "name": "a\u{1f}b", "price_cents": 1 }),
                json!({ "name": "x".repeat(201), "price_cents": 1 }),
                json!({ "name": "ok", "description": "d".repeat(10_001), "price_cents": 1 }),
                json!({ "name": "ok", "price_cents": -1 }),
                json!({ "price_cents": 1 }),
            ] {
                let (status, answer) = t.call(Method::POST, "/products", Some(body.clone())).await;
                assert!(status.is_client_error(), "{body}: {status} {answer}");
            }
            let (status, list) = t.call(Method::GET, "/products", None).await;
            assert_eq!((status, list), (StatusCode::OK, json!([])));
            t.drop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn listing_by_name_is_newest_first_and_follows_renames() {
        for t in apps("list").await {
            let mug = t.create("Blue mug", 1).await;
            for price in 2..=5 {
                t.create("Blue mug", price).await;
            }
            t.create("Red mug", 100).await;
            let newest_first = t.settled("Blue mug", 2, |p| p.len() == 5).await;
            assert_eq!(newest_first, [5, 4, 3, 2, 1], "{}", t.backend);

            // An update moves the product to the front.
            let uri = format!("/products/{}", mug["id"].as_str().expect("an id"));
            assert_eq!(
                t.call(Method::PUT, &uri, Some(json!({ "price_cents": 6 })))
                    .await
                    .0,
                StatusCode::OK
            );
            let moved = t.settled("Blue mug", 2, |p| p.first() == Some(&6)).await;
            assert_eq!(moved, [6, 5, 4, 3, 2], "{}", t.backend);

            // A rename leaves the old name's listing at once, and joins the new one's.
            let renamed = json!({ "name": "Green mug" });
            assert_eq!(
                t.call(Method::PUT, &uri, Some(renamed)).await.0,
                StatusCode::OK
            );
            assert!(
                !t.listed("Blue mug", 10).await.contains(&6),
                "{}: verified listing",
                t.backend
            );
            assert_eq!(t.settled("Green mug", 10, |p| p == [6]).await, [6]);
            assert_eq!(t.settled("Red mug", 10, |p| p == [100]).await, [100]);
            t.drop().await;
        }
    }

    // Several worker threads, so that updates really interleave between read and write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_updates_are_never_lost() {
        for t in apps("concurrent").await {
            let mug = t.create("Mug", 100).await;
            let uri = format!("/products/{}", mug["id"].as_str().expect("an id"));

            // Eight updates at once, without versions: every one is applied exactly once.
            let updates: Vec<_> = (0..8u64)
                .map(|i| spawn_put(&t, &uri, json!({ "price_cents": 200 + i })))
                .collect();
            for answer in join_all(updates).await {
                let (status, _, body) = answer.expect("the task ran");
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            let (_, read) = t.call(Method::GET, &uri, None).await;
            assert_eq!(read["version"], 9, "{read}");

            // Two updates of different fields at once: both survive.
            let rename = spawn_put(&t, &uri, json!({ "name": "Big mug" }));
            let reprice = spawn_put(&t, &uri, json!({ "price_cents": 1 }));
            for answer in [rename.await, reprice.await] {
                assert_eq!(answer.expect("the task ran").0, StatusCode::OK);
            }
            let (_, read) = t.call(Method::GET, &uri, None).await;
            assert_eq!(
                (&read["name"], &read["price_cents"]),
                (&json!("Big mug"), &json!(1))
            );

            // Two updates that both read version 11: exactly one wins.
            let first = spawn_put(&t, &uri, json!({ "price_cents": 2, "version": 11 }));
            let second = spawn_put(&t, &uri, json!({ "price_cents": 3, "version": 11 }));
            let mut statuses = [
                first.await.expect("the task ran").0,
                second.await.expect("the task ran").0,
            ];
            statuses.sort();
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::CONFLICT],
                "{}",
                t.backend
            );
            t.drop().await;
        }
    }

    /// The exported Terraform and CloudFormation say what the catalogue's seed says: hash key
    /// `id` (S), and the GSI `product-name-index` on `name` (S) and `updated_at` (N),
    /// projecting every attribute, billed per request.
    #[cfg(feature = "dynamodb")]
    #[test]
    fn exported_terraform_and_cloudformation_match_the_catalogue() {
        let dir = std::env::temp_dir().join(format!("storekit-products-{}", std::process::id()));
        let files = export(&dir).expect("export");
        assert_eq!(files.len(), 2);

        let template: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("products.cfn.json")).expect("read"),
        )
        .expect("JSON");
        let table = template["Resources"]
            .as_object()
            .expect("resources")
            .values()
            // Named by its own name, as the catalogue's Terraform names it.
            .find(|r| r["Properties"]["TableName"] == "product-table")
            .expect("the products table")["Properties"]
            .clone();
        assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            table["KeySchema"],
            json!([{"AttributeName": "id", "KeyType": "HASH"}])
        );
        let mut attributes = table["AttributeDefinitions"]
            .as_array()
            .expect("attributes")
            .clone();
        attributes.sort_by_key(|a| a["AttributeName"].to_string());
        assert_eq!(
            Value::from(attributes),
            json!([
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "name", "AttributeType": "S"},
                {"AttributeName": "updated_at", "AttributeType": "N"},
            ])
        );
        assert_eq!(
            table["GlobalSecondaryIndexes"],
            json!([{
                "IndexName": "product-name-index",
                "KeySchema": [
                    {"AttributeName": "name", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["price_cents"]},
            }])
        );

        let terraform: hcl::Body =
            hcl::from_str(&std::fs::read_to_string(dir.join("products.tf")).expect("read"))
                .expect("HCL");
        let resource = terraform
            .blocks()
            .find(|b| {
                b.identifier() == "resource"
                    && b.body()
                        .attributes()
                        .any(|a| a.key() == "name" && a.expr().to_string() == "\"product-table\"")
            })
            .expect("the products resource");
        let attribute = |key: &str| {
            resource
                .body()
                .attributes()
                .find(|a| a.key() == key)
                .map(|a| a.expr().clone())
        };
        assert_eq!(attribute("hash_key"), Some("id".into()));
        assert_eq!(attribute("range_key"), None);
        assert_eq!(attribute("billing_mode"), Some("PAY_PER_REQUEST".into()));
        let blocks = |name: &str| {
            resource
                .body()
                .blocks()
                .filter(|b| b.identifier() == name)
                .map(|b| {
                    b.body()
                        .attributes()
                        .map(|a| (a.key().to_owned(), a.expr().to_string()))
                        .collect::<std::collections::BTreeMap<_, _>>()
                })
                .collect::<Vec<_>>()
        };
        let mut attributes: Vec<_> = blocks("attribute")
            .into_iter()
            .map(|a| (a["name"].clone(), a["type"].clone()))
            .collect();
        attributes.sort();
        assert_eq!(
            attributes,
            [("id", "S"), ("name", "S"), ("updated_at", "N")]
                .map(|(n, t)| (format!("{n:?}"), format!("{t:?}")))
        );
        let indexes = blocks("global_secondary_index");
        assert_eq!(indexes.len(), 1);
        assert_eq!(indexes[0]["name"], "\"product-name-index\"");
        assert_eq!(indexes[0]["hash_key"], "\"name\"");
        assert_eq!(indexes[0]["range_key"], "\"updated_at\"");
        assert_eq!(indexes[0]["projection_type"], "\"INCLUDE\"");
        assert_eq!(
            indexes[0]["non_key_attributes"]
                .split_whitespace()
                .collect::<String>(),
            "[\"price_cents\"]"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
