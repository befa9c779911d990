//! PostgreSQL through an sqlx pool.
//!
//! Every operation is one statement where the database can decide it atomically (uniqueness,
//! set-if-absent, compare-and-swap, batches through `UNNEST`), and conflicts are read from the
//! server's answer. Tables live in an optional schema, with an optional prefix, so several
//! applications or test runs can share one database.

mod error;
mod kv;
mod schema;
mod tables;
mod users;

use std::sync::Arc;

use sqlx::SqlStr;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use storekit_core::admin::{MigrationReport, SchemaDifference};
use storekit_core::{Error, IdKind, Result};

use crate::dialect::Dialect;
use crate::statements::{Renderer, Statements};
use crate::table_layout::{Catalog, Layouts};
use crate::tables::Tables;
use error::pg_error;

/// Every statement the users, OAuth, tokens and kv stores run on PostgreSQL stays the text
/// committed in `tests/snapshots/` (see `crate::snapshots`).
#[test]
fn statements_are_unchanged() {
    let tables = Tables::new(Some("shop"), "app_").expect("valid prefix");
    for kind in crate::snapshots::KINDS {
        let r = Renderer {
            dialect: Dialect::Postgres,
            tables: &tables,
            convert: std::convert::identity,
        };
        let mut texts = Statements::new(&r, kind).texts();
        texts.extend(schema::PostgresOnly::new(&r).texts());
        let name = format!("statements-postgres-{}.sql", kind.as_str());
        crate::snapshots::check_statements(&name, &texts);
    }
}

/// How to connect a [`PostgresStore`].
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// The server's URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// A schema for the tables (created by `migrate`); `None` uses the connection's default.
    pub schema: Option<String>,
    /// Prefix for every table name (ASCII letters, digits, `_`).
    pub table_prefix: String,
    /// The kind of user ids.
    pub id_kind: IdKind,
    /// Pool size. Default 16.
    pub max_connections: u32,
    /// How often a background task deletes expired key-value items; `None` never does (then
    /// call `purge_expired` yourself). Default 60 s.
    pub purge_interval: Option<std::time::Duration>,
    /// How long expired key-value items are kept after their deadline: the purge leaves them
    /// that long, and `KvStore::get_stale` may read them. Default 0 (URL: `keep_expired=S`,
    /// in seconds).
    pub keep_expired: std::time::Duration,
    /// How long `connect` and each operation wait for a connection (connecting included)
    /// before failing with [`Error::Unavailable`]. Default 5 s.
    pub connect_timeout: std::time::Duration,
    /// The server cancels a statement that runs longer than this (PostgreSQL's
    /// `statement_timeout`), and the operation fails with [`Error::Unavailable`]; `None` leaves
    /// the server's setting. Default 30 s.
    pub statement_timeout: Option<std::time::Duration>,
    /// The longest a call (all its statements and retries) waits for the server before failing
    /// with [`Error::OutcomeUnknown`]: what reports a server that stopped answering mid-call,
    /// which no server-side timeout can. `clear`, `purge_expired` and `migrate`, whose work
    /// grows with the data, are bounded by `statement_timeout` only. `None`: no limit.
    /// Default 10 s.
    pub operation_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &format_args!("{}", redacted_url(&self.url)))
            .field("schema", &self.schema)
            .field("table_prefix", &self.table_prefix)
            .field("id_kind", &self.id_kind)
            .field("max_connections", &self.max_connections)
            .field("purge_interval", &self.purge_interval)
            .field("keep_expired", &self.keep_expired)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Default for PostgresConfig {
    /// The default settings without a server URL: what [`PostgresStore::from_pool`] needs, since
    /// the pool brings its own connections.
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: None,
            table_prefix: String::new(),
            id_kind: IdKind::Uuid,
            max_connections: 16,
            purge_interval: Some(crate::purge::DEFAULT_INTERVAL),
            keep_expired: std::time::Duration::ZERO,
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout: Some(std::time::Duration::from_secs(30)),
            operation_timeout: Some(std::time::Duration::from_secs(10)),
        }
    }
}

/// The URL without what may be secret: user, password and the query string (which may hold
/// `password=` or `sslpassword=`); host, port and database stay.
fn redacted_url(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "<not a URL>".to_owned();
    };
    let port = parsed
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let query = if parsed.query().is_some() { "?…" } else { "" };
    format!(
        "{}://…@{}{port}{}{query}",
        parsed.scheme(),
        parsed.host_str().unwrap_or(""),
        parsed.path()
    )
}

/// The connection parameters the driver (sqlx) reads from a URL; `options[NAME]` sets a
/// server setting.
const DRIVER_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "options[NAME]",
];

fn is_driver_parameter(name: &str) -> bool {
    DRIVER_PARAMETERS.contains(&name)
        || name
            .strip_prefix("options[")
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with(']'))
}

impl PostgresConfig {
    /// Settings for the server at `url`. The URL may carry storekit's own query parameters
    /// `schema=`, `prefix=`, `id=uuid|int` and `keep_expired=SECONDS`, which are taken out
    /// before connecting, and the driver's own (`sslmode=`, `application_name=`,
    /// `options[NAME]=`…); any other parameter is [`Error::InvalidInput`], so that a misspelt
    /// one is not silently ignored.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = url::Url::parse(url).map_err(|e| Error::invalid("url", format!("{e}")))?;
        let mut config = Self::default();
        let mut kept = Vec::new();
        for (name, value) in parsed.query_pairs() {
            match (&*name, &*value) {
                ("schema", schema) => config.schema = Some(schema.to_owned()),
                ("prefix", prefix) => config.table_prefix = prefix.to_owned(),
                ("id", kind) => config.id_kind = IdKind::parse(kind)?,
                ("keep_expired", secs) => {
                    config.keep_expired = storekit_core::time::parse_seconds("keep_expired", secs)?;
                }
                (driver, _) if is_driver_parameter(driver) => {
                    kept.push((name.into_owned(), value.into_owned()));
                }
                // The driver would only log and ignore it: a typo in `schema=` would go
                // unnoticed and the tables land in the default schema. Only the name is
                // repeated, since a value may be a password.
                (other, _) => {
                    return Err(Error::invalid(
                        "url",
                        format!(
                            "unknown parameter {other:?} (known: schema, prefix, id, keep_expired, {})",
                            DRIVER_PARAMETERS.join(", ")
                        ),
                    ));
                }
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        config.url = parsed.into();
        Ok(config)
    }

    /// Settings from the URL in `DATABASE_URL` (see [`PostgresConfig::from_url`]).
    pub fn from_env() -> Result<Self> {
        Self::from_url(&storekit_core::database_url_from_env()?)
    }

    /// Puts the tables in `schema`.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    crate::config::shared_setters!();

    /// Sets the pool size.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets how long to wait for a connection before failing with `Unavailable`.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the server-side limit on one statement (`None`: the server's own setting).
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets how long a call waits for the server before `OutcomeUnknown` (`None`: no limit).
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }
}

/// A storekit store on PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    sql: Statements<SqlStr>,
    own: schema::PostgresOnly<SqlStr>,
    id_kind: IdKind,
    tables: Tables,
    catalog: Catalog,
    layouts: Layouts,
    schema: Option<String>,
    purger: crate::purge::Purger,
    keep_expired: std::time::Duration,
    operation_timeout: Option<std::time::Duration>,
}

impl storekit_core::backend::Backend for PostgresStore {
    fn name(&self) -> &'static str {
        Dialect::Postgres.name()
    }

    fn system(&self) -> &'static str {
        Dialect::Postgres.system()
    }
}

impl PostgresStore {
    /// Connects a pool. Run [`PostgresStore::migrate`] before first use.
    pub async fn connect(config: &PostgresConfig) -> Result<Self> {
        // A bad schema or prefix is the caller's mistake, reported before any connection.
        Tables::new(config.schema.as_deref(), &config.table_prefix)?;
        let mut options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| Error::invalid("url", format!("{e}")))?;
        if let Some(timeout) = config.statement_timeout {
            let millis = timeout.as_millis().max(1).to_string();
            options = options.options([("statement_timeout", millis)]);
        }
        // A ping before every checkout doubles the round trips of a point read; a broken
        // connection surfaces as an error on use instead, and the pool replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .test_before_acquire(false)
            // Without it, an unreachable server answers after sqlx's default of 30 s.
            .acquire_timeout(config.connect_timeout)
            .connect_with(options)
            .await
            .map_err(pg_error)?;
        Self::from_pool(pool, config)
    }

    /// Uses a pool the application already has; `config.url` and the connection settings
    /// (`max_connections`, `connect_timeout`, `statement_timeout`) are ignored: the pool's
    /// own apply.
    pub fn from_pool(pool: PgPool, config: &PostgresConfig) -> Result<Self> {
        let tables = Tables::new(config.schema.as_deref(), &config.table_prefix)?;
        let r = Renderer {
            dialect: Dialect::Postgres,
            tables: &tables,
            convert: schema::sql,
        };
        let (sql, own) = (
            Statements::new(&r, config.id_kind),
            schema::PostgresOnly::new(&r),
        );
        let catalog = Catalog::new(Dialect::Postgres, &tables);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                sql,
                own,
                id_kind: config.id_kind,
                tables,
                catalog,
                layouts: Layouts::new(Dialect::Postgres),
                schema: config.schema.clone(),
                purger: crate::purge::Purger::new(config.purge_interval),
                keep_expired: config.keep_expired,
                operation_timeout: config.operation_timeout,
            }),
        })
    }

    /// Runs one call within the operation timeout. Past it, the call is dropped (sqlx then
    /// discards the connection it was using) and its outcome is unknown.
    async fn within_deadline<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(limit) = self.inner.operation_timeout else {
            return call.await;
        };
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Error::outcome_unknown(
                "postgres",
                format!("no answer within the operation timeout of {limit:?}"),
            ))
        })
    }

    /// The pool, to share with the rest of the application.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Creates or upgrades the schema and tables; safe to run at every start, concurrently.
    /// Fails if the tables exist for another id kind.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_report().await.map(drop)
    }

    /// What [`PostgresStore::migrate`] does, reporting the schema (when the store has one of
    /// its own), each table and index of storekit's own tables, and each migration as created
    /// by this run or already present.
    pub async fn migrate_report(&self) -> Result<MigrationReport> {
        schema::migrate(
            &self.inner.pool,
            &self.inner.tables,
            self.inner.schema.as_deref(),
            self.inner.id_kind,
        )
        .await
    }

    /// How the database differs from what this code expects: storekit's own tables (their
    /// columns, indexes and constraints, and the migrations recorded) and every table the
    /// tables store's catalog records, compared with the same statements run in a scratch
    /// schema inside a transaction that is rolled back. Empty when they agree; a database
    /// never migrated lists its missing tables.
    pub async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        schema::differences(
            &self.inner.pool,
            &self.inner.tables,
            self.inner.schema.as_deref(),
            self.inner.id_kind,
        )
        .await
    }

    /// Drops every table of this store (its schema and prefix only), the tables store's
    /// included, e.g. after a test.
    pub async fn drop_tables(&self) -> Result<()> {
        schema::drop_all(&self.inner.pool, &self.inner.tables).await
    }

    /// Every row of every table, the tables store's included, rendered as text, for tests
    /// that check what is stored.
    pub async fn dump(&self) -> Result<String> {
        schema::dump(&self.inner.pool, &self.inner.tables).await
    }
}

crate::config::admin_through_inherent!(PostgresStore);

#[cfg(test)]
mod tests {
    use super::PostgresConfig;

    #[test]
    fn debug_shows_no_password_wherever_the_url_carries_it() -> storekit_core::Result<()> {
        for url in [
            "postgres://app:hunter2@db.internal:5433/shop",
            "postgres://db.internal/shop?user=app&password=hunter2",
            "postgres:///shop?host=/run/pg&password=hunter2&application_name=app",
        ] {
            let debug = format!("{:?}", PostgresConfig::from_url(url)?);
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!debug.contains("app"), "{debug}");
            assert!(debug.contains("shop"), "{debug}");
        }
        Ok(())
    }

    #[test]
    fn unknown_parameters_are_refused_without_their_value() -> storekit_core::Result<()> {
        for url in [
            "postgres://db/shop?schmea=hunter2",
            "postgres://db/shop?schema=app&sslpasword=hunter2",
            "postgres://db/shop?options[]=hunter2",
        ] {
            let err = PostgresConfig::from_url(url).expect_err(url);
            assert!(
                matches!(err, storekit_core::Error::InvalidInput { what: "url", .. }),
                "{err:?}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let config = PostgresConfig::from_url(
            "postgres://db/shop?schema=app&sslmode=disable&options[search_path]=x&port=5433",
        )?;
        assert_eq!(config.schema.as_deref(), Some("app"));
        assert!(config.url.contains("sslmode=disable"), "{}", config.url);
        assert!(config.url.contains("search_path"), "{}", config.url);
        Ok(())
    }
}
