//! Setting up each backend for a run, storekit beside its raw baseline, and removing what the
//! run created afterwards.

#[cfg(feature = "sqlite")]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use storekit::{BoxError, Stores};

use crate::measure::{Mode, Sample};
#[cfg(feature = "dynamodb")]
use crate::raw_dynamodb;
#[cfg(feature = "postgres")]
use crate::raw_postgres;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "dynamodb"))]
use crate::raw_scale;
#[cfg(feature = "sqlite")]
use crate::raw_sqlite;
use crate::targets::{Kv, Products, Storekit, Users};
use crate::{Backend, Plan, Workload, scale, workloads};

/// Every workload on one backend, storekit and (except in memory) the raw driver.
pub(crate) async fn bench(backend: Backend, plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    let mut samples = match backend {
        Backend::Memory => {
            let stores = storekit::connect("memory://").await?;
            // There is no driver to compare the reference backend with.
            compare::<Storekit>(plan, &stores, None, None).await?
        }
        Backend::Sqlite => sqlite(plan).await?,
        Backend::Postgres => postgres(plan).await?,
        Backend::DynamoDb => dynamodb(plan).await?,
    };
    for sample in &mut samples {
        sample.backend = backend.name();
    }
    Ok(samples)
}

/// A raw-driver baseline, and where its DynamoDB requests are counted.
type Raw<R> = (Arc<R>, Option<Arc<AtomicU64>>);

/// Runs each workload on storekit and on the raw driver, one mode after the other, so the
/// two peers of a row are measured moments apart; `plan.raw_first` says which goes first. The
/// samples come out in the same order either way, which `--rounds` relies on.
async fn compare<R: Kv + Users + Products + 'static>(
    plan: &Plan,
    stores: &Stores,
    requests: Option<Arc<AtomicU64>>,
    raw: Option<Raw<R>>,
) -> Result<Vec<Sample>, BoxError> {
    let storekit = Arc::new(Storekit::new(stores)?);
    let mut samples = Vec::new();
    for mode in [Mode::Seq, Mode::Concurrent(plan.concurrency)] {
        let kit = plan.runner("storekit", mode, requests.clone());
        let raw = raw
            .as_ref()
            .map(|(store, requests)| (store, plan.runner("raw", mode, requests.clone())));
        if plan.runs(Workload::Kv) {
            let (kit_kv, raw_kv) =
                pair(plan, workloads::kv(&kit, storekit.clone(), plan.n), async {
                    match &raw {
                        Some((store, runner)) => {
                            workloads::kv(runner, Arc::clone(store), plan.n).await
                        }
                        None => Vec::new(),
                    }
                })
                .await;
            samples.extend(kit_kv);
            samples.extend(raw_kv);
        }
        if plan.runs(Workload::Users) {
            let (kit_users, raw_users) = pair(
                plan,
                workloads::storekit_users(&kit, storekit.clone()),
                async {
                    match &raw {
                        Some((store, runner)) => {
                            workloads::raw_users(runner, Arc::clone(store)).await
                        }
                        None => Vec::new(),
                    }
                },
            )
            .await;
            samples.extend(kit_users);
            samples.extend(raw_users);
        }
        if plan.runs(Workload::Tables) {
            let (kit_tables, raw_tables) =
                pair(plan, workloads::tables(&kit, storekit.clone()), async {
                    match &raw {
                        Some((store, runner)) => workloads::tables(runner, Arc::clone(store)).await,
                        None => Ok(Vec::new()),
                    }
                })
                .await;
            samples.extend(kit_tables?);
            samples.extend(raw_tables?);
        }
    }
    Ok(samples)
}

/// Runs storekit's and the raw driver's measurement of one workload, one after the other, in
/// the order the plan says.
async fn pair<K, R>(
    plan: &Plan,
    kit: impl Future<Output = K>,
    raw: impl Future<Output = R>,
) -> (K, R) {
    if plan.raw_first {
        let raw = raw.await;
        (kit.await, raw)
    } else {
        let kit = kit.await;
        (kit, raw.await)
    }
}

/// `bench_<pid>`: names the tables of one run, so runs never meet.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "dynamodb"))]
pub(crate) fn run_tag() -> String {
    format!("bench_{}", std::process::id())
}

/// A directory for one run's SQLite files, removed when dropped (also on an error).
#[cfg(feature = "sqlite")]
pub(crate) struct TempDir(pub(crate) PathBuf);

#[cfg(feature = "sqlite")]
impl TempDir {
    pub(crate) fn new() -> std::io::Result<Self> {
        // Numbered too: the tests run several benches at once in one process.
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("storekit-{}_{number}", run_tag()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite_stores(path: &std::path::Path) -> Result<Stores, BoxError> {
    let stores = storekit::connect(&format!(
        "sqlite://{}?prefix={}_",
        path.display(),
        run_tag()
    ))
    .await?;
    stores.migrate().await?;
    Ok(stores)
}

#[cfg(feature = "sqlite")]
async fn sqlite(plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    let dir = TempDir::new()?;
    let stores = sqlite_stores(&dir.0.join("storekit.db")).await?;
    let raw = Arc::new(raw_sqlite::RawSqlite::create(&dir.0.join("raw.db"))?);
    compare(plan, &stores, None, Some((raw, None))).await
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    Err("the sqlite backend is not compiled in: build with --features sqlite".into())
}

#[cfg(feature = "postgres")]
pub(crate) fn postgres_url() -> String {
    std::env::var("STOREKIT_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with one more query parameter.
#[cfg(feature = "postgres")]
pub(crate) fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

#[cfg(feature = "postgres")]
async fn postgres(plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    let url = postgres_url();
    let schema = run_tag();
    let stores = storekit::connect(&with_param(&url, &format!("schema={schema}"))).await?;
    stores.migrate().await?;
    let raw = Arc::new(raw_postgres::RawPostgres::create(&url, &format!("{schema}_raw")).await?);
    // What the run created is removed even when it failed.
    let samples = compare(plan, &stores, None, Some((raw.clone(), None))).await;
    raw.remove().await?;
    raw_postgres::drop_storekit_schema(&url, &schema).await?;
    samples
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    Err("the postgres backend is not compiled in: build with --features postgres".into())
}

#[cfg(feature = "dynamodb")]
fn dynamodb_endpoint() -> Result<String, BoxError> {
    std::env::var("STOREKIT_DYNAMODB_ENDPOINT").map_err(|_| {
        "set STOREKIT_DYNAMODB_ENDPOINT to DynamoDB Local's URL \
         (eval \"$(scripts/services.sh up)\" starts one and sets it)"
            .into()
    })
}

/// storekit on a client the bench builds itself, so that its requests can be counted.
#[cfg(feature = "dynamodb")]
async fn dynamodb_store(
    endpoint: &str,
    requests: Arc<AtomicU64>,
) -> Result<storekit::DynamoDbStore, BoxError> {
    let config = storekit::DynamoDbConfig::builder()
        .table_prefix(format!("{}_", run_tag()))
        .build()?;
    let client = raw_dynamodb::client(endpoint, requests).await;
    Ok(storekit::DynamoDbStore::from_client(client, &config))
}

#[cfg(feature = "dynamodb")]
async fn dynamodb(plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    let endpoint = dynamodb_endpoint()?;
    let (requests, raw_requests) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let store = dynamodb_store(&endpoint, requests.clone()).await?;
    let stores = Stores::from(store.clone());
    stores.migrate().await?;
    let client = raw_dynamodb::client(&endpoint, raw_requests.clone()).await;
    let raw =
        Arc::new(raw_dynamodb::RawDynamo::create(client, &format!("{}_raw_", run_tag())).await?);
    let samples = compare(
        plan,
        &stores,
        Some(requests),
        Some((raw.clone(), Some(raw_requests))),
    )
    .await;
    // The baseline's first: storekit's `drop_tables` drops every table under its prefix,
    // which the baseline's prefix extends.
    raw.remove().await?;
    store.drop_tables().await?;
    samples
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamodb(_plan: &Plan) -> Result<Vec<Sample>, BoxError> {
    Err("the dynamodb backend is not compiled in: build with --features dynamodb".into())
}

/// `--scale` on one backend, on fresh tables of its own, with the backend's raw driver for
/// the listings (reading those tables).
pub(crate) async fn bench_scale(
    backend: Backend,
    plan: &Plan,
    rows: usize,
) -> Result<scale::ScaleReport, BoxError> {
    eprintln!("bench: {} --scale to {rows} rows ...", backend.name());
    match backend {
        Backend::Memory => {
            let stores = storekit::connect("memory://").await?;
            scale::run(backend.name(), &stores, None, None, rows, plan).await
        }
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let dir = TempDir::new()?;
            let path = dir.0.join("scale.db");
            let stores = sqlite_stores(&path).await?;
            let raw = raw_scale::Sqlite::open(&path, &format!("{}_", run_tag()))?;
            scale::run(backend.name(), &stores, Some(&raw), Some(&path), rows, plan).await
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let url = postgres_url();
            let schema = format!("{}_scale", run_tag());
            let stores = storekit::connect(&with_param(&url, &format!("schema={schema}"))).await?;
            stores.migrate().await?;
            let report = async {
                let raw = raw_scale::Postgres::connect(&url, &schema).await?;
                scale::run(backend.name(), &stores, Some(&raw), None, rows, plan).await
            }
            .await;
            raw_postgres::drop_storekit_schema(&url, &schema).await?;
            report
        }
        #[cfg(feature = "dynamodb")]
        Backend::DynamoDb => {
            let endpoint = dynamodb_endpoint()?;
            let store = dynamodb_store(&endpoint, Arc::new(AtomicU64::new(0))).await?;
            let stores = Stores::from(store.clone());
            stores.migrate().await?;
            let client = raw_dynamodb::client(&endpoint, Arc::new(AtomicU64::new(0))).await;
            let raw = raw_scale::Dynamo::new(client, &format!("{}_", run_tag()));
            let report = scale::run(backend.name(), &stores, Some(&raw), None, rows, plan).await;
            store.drop_tables().await?;
            report
        }
        #[allow(unreachable_patterns)] // Reached only for backends whose feature is off.
        other => Err(format!("the {} backend is not compiled in", other.name()).into()),
    }
}
