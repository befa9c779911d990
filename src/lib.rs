//! storekit: a user store, a key-value store and tables of records for Rust services, on
//! SQLite (embedded, the default), PostgreSQL or Amazon DynamoDB, chosen by a URL or a Cargo
//! feature, not by code. Tables (typed records with query and unique indexes) are in
//! [`table`], whose docs hold the consistency of each backend.
//!
//! ```no_run
//! use std::time::Duration;
//! use storekit::{KvStoreExt as _, NewUser};
//!
//! # async fn run() -> storekit::Result<()> {
//! let stores = storekit::connect("sqlite://app.db").await?;
//! stores.migrate().await?;
//! let users = stores.auth();
//! let user = users.create_user(NewUser::new("ada@example.com", "$argon2id$...")).await?;
//! let login = users.create_access_token(user.id).await?;
//! let kv = stores.kv();
//! kv.set_json("sessions", &login.token, &user.id, Some(Duration::from_secs(3600))).await?;
//! # Ok(()) }
//! ```
//!
//! | URL | backend | Cargo feature |
//! |---|---|---|
//! | `sqlite://PATH`, `sqlite::memory:` | [`SqliteStore`] | `sqlite` (default) |
//! | `postgres://user@host/db` | [`PostgresStore`] | `postgres` |
//! | `dynamodb://?endpoint=URL&region=R&prefix=P` | [`DynamoDbStore`] | `dynamodb` |
//! | `memory://` | [`MemoryStore`] | always |
//!
//! Every URL also takes `prefix=` (table name prefix) and `id=uuid|int` (the kind of user ids);
//! PostgreSQL also `schema=`. The stores behave the same on every backend: the
//! `storekit-conformance` suite runs the same cases against each of them.

use std::sync::Arc;

pub use storekit_core::*;
/// `#[derive(Record)]`: a table declared on its record type (feature `derive`, on by default).
#[cfg(feature = "derive")]
pub use storekit_derive::Record;

pub mod copy;
#[cfg(feature = "http-cache")]
pub mod http_cache;
#[cfg(feature = "axum-login")]
pub mod login;
pub mod schema;
#[cfg(feature = "tower-sessions")]
pub mod sessions;
pub mod stats;

/// What a service needs in one `use storekit::prelude::*;`: the store traits (and their typed
/// helpers), the types their calls take and return, the error, [`connect`] and [`Stores`].
pub mod prelude {
    #[cfg(feature = "derive")]
    pub use crate::Record;
    pub use crate::table::{
        KeyDef, KeyValue, Query, RecordKey, RecordType, SortCondition, Versioned,
    };
    pub use crate::{
        AccessToken, AccessTokenStore, AuthStore, DynAuthStore, DynKvStore, Error, IdKind,
        IssuedToken, KvStore, KvStoreExt, NewOAuthAccount, NewUser, OAuthAccount,
        OAuthAccountPatch, OAuthAccountStore, Page, PageRequest, Result, Stores, Table,
        TableSchema, TableStore, User, UserId, UserPatch, UserStore, connect,
    };
}
#[cfg(feature = "dynamodb")]
pub use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};
#[cfg(feature = "postgres")]
pub use storekit_sql::{PostgresConfig, PostgresStore};
#[cfg(feature = "sqlite")]
pub use storekit_sql::{SqliteConfig, SqliteStore};

/// A connected backend: its user store, key-value store and tables store as trait objects.
///
/// Made by [`connect`] from a URL, or with `.into()` from a store built with its typed config
/// ([`SqliteConfig`], `PostgresConfig`, `DynamoDbConfig`), which is how to pass options a URL
/// cannot carry, such as an existing pool or AWS client. It holds the backend as one
/// [`Store`] object, of which each accessor hands out a part.
#[derive(Debug, Clone)]
pub struct Stores {
    store: Arc<DynStore>,
}

impl From<Arc<DynStore>> for Stores {
    /// Wraps any whole backend, one of this crate's or your own (see [`Store`]).
    fn from(store: Arc<DynStore>) -> Self {
        Self { store }
    }
}

impl From<MemoryStore> for Stores {
    fn from(store: MemoryStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<SqliteStore> for Stores {
    /// Wraps a store built with its typed config, e.g.
    /// `SqliteStore::connect(&SqliteConfig::file("app.db").table_prefix("app_")).await?.into()`.
    fn from(store: SqliteStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }
}

#[cfg(feature = "postgres")]
impl From<PostgresStore> for Stores {
    /// Wraps a store built with its typed config or from an existing pool.
    fn from(store: PostgresStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }
}

#[cfg(feature = "dynamodb")]
impl From<DynamoDbStore> for Stores {
    /// Wraps a store built with its typed config or from an existing client.
    fn from(store: DynamoDbStore) -> Self {
        Self {
            store: Arc::new(store),
        }
    }
}

/// Connects to the backend named by `url`'s scheme. Creates nothing: call
/// [`Stores::migrate`] (typically once at start-up) before using the stores.
///
/// A scheme whose Cargo feature is off fails with [`Error::InvalidInput`] naming the feature.
pub async fn connect(url: &str) -> Result<Stores> {
    let scheme = url.split(':').next().unwrap_or_default();
    let store: Arc<DynStore> = match scheme {
        "memory" => Arc::new(memory_store(url)?),
        "sqlite" => sqlite(url).await?,
        "postgres" | "postgresql" => postgres(url).await?,
        "dynamodb" => dynamodb(url).await?,
        other => {
            return Err(Error::invalid(
                "url",
                format!("unknown scheme {other:?}: expected sqlite, postgres, dynamodb or memory"),
            ));
        }
    };
    Ok(Stores { store })
}

impl Stores {
    /// Creates or upgrades the tables this backend needs; idempotent and safe to run at every
    /// start.
    pub async fn migrate(&self) -> Result<()> {
        self.store.migrate().await
    }

    /// What [`Stores::migrate`] does, reporting each object (table, index, TTL setting,
    /// migration step) as created or already present: what `storekit migrate` prints.
    pub async fn migrate_report(&self) -> Result<admin::MigrationReport> {
        self.store.migrate_report().await
    }

    /// How the live database differs from what this code expects: storekit's own tables
    /// (keys, columns, indexes, TTL) and every table the tables store's catalog records. Empty
    /// when they agree; what `storekit schema check` prints.
    pub async fn schema_differences(&self) -> Result<Vec<admin::SchemaDifference>> {
        self.store.schema_differences().await
    }

    /// The query indexes of the tables store's tables that their catalogs do not declare
    /// (another client's global secondary indexes on an adopted DynamoDB table): left alone,
    /// so never a difference, and listed by `storekit schema check`. SQL and memory keep no
    /// such index (`ensure_table` forgets it, see `TableStatus::UndeclaredIndexes`): empty.
    pub async fn undeclared_indexes(&self) -> Result<Vec<admin::SchemaDifference>> {
        self.store.undeclared_indexes().await
    }

    /// Drops every table of this store (its prefix only), the tables store's included, and
    /// everything in them: for tests and teardown. The memory store is left as it is.
    pub async fn drop_tables(&self) -> Result<()> {
        self.store.drop_tables().await
    }

    /// Users, OAuth accounts and access tokens.
    #[must_use]
    pub fn auth(&self) -> Arc<DynAuthStore> {
        self.store.clone()
    }

    /// The key-value store.
    #[must_use]
    pub fn kv(&self) -> Arc<DynKvStore> {
        self.store.clone()
    }

    /// Tables of records with query and unique indexes (see [`table`]); declare each table
    /// with a [`TableSchema`] and use it through a typed [`Table`].
    #[must_use]
    pub fn tables(&self) -> Arc<dyn TableStore> {
        self.store.clone()
    }

    /// Reading the stores out and writing them back exactly (see [`transfer`]): what
    /// [`copy::copy`] and [`stats::stats`] are built on.
    #[must_use]
    pub fn transfer(&self) -> Arc<dyn TransferStore> {
        self.store.clone()
    }

    /// The whole backend as one object: every store above, and its administration
    /// ([`admin::Admin`], e.g. `dump` for a test that checks what is stored).
    ///
    /// ```
    /// # async fn run() -> storekit::Result<()> {
    /// let stores = storekit::connect("memory://").await?;
    /// stores.kv().set("sessions", "abc", b"ada", None).await?;
    /// assert!(stores.store().dump().await?.contains("sessions abc"));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    #[must_use]
    pub fn store(&self) -> Arc<DynStore> {
        self.store.clone()
    }

    /// The backend's name: `memory`, `sqlite`, `postgres` or `dynamodb`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        self.store.name()
    }
}

/// The in-memory store a `memory://` URL describes. It takes the parameters every URL takes,
/// `id=` and `prefix=`, and `keep_expired=`; a prefix is checked like any other but changes
/// nothing, since every `MemoryStore` is a world of its own.
fn memory_store(url: &str) -> Result<MemoryStore> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let (mut kind, mut keep_expired) = (IdKind::Uuid, std::time::Duration::ZERO);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("id", value)) => kind = IdKind::parse(value)?,
            Some(("prefix", prefix)) => validate::check_identifier("prefix", prefix)?,
            Some(("keep_expired", secs)) => {
                keep_expired = time::parse_seconds("keep_expired", secs)?;
            }
            _ => {
                return Err(Error::invalid(
                    "url",
                    format!("unknown parameter {pair:?} (expected id=, prefix= or keep_expired=)"),
                ));
            }
        }
    }
    Ok(MemoryStore::with_id_kind(kind).keep_expired(keep_expired))
}

#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "dynamodb")))]
fn feature_off(what: &'static str, backend: &str) -> Error {
    Error::invalid(
        what,
        format!("the {backend} backend is not compiled in: enable storekit's `{backend}` feature"),
    )
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<Arc<DynStore>> {
    let store = SqliteStore::connect(&SqliteConfig::from_url(url)?).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str) -> Result<Arc<DynStore>> {
    Err(feature_off("url", "sqlite"))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<DynStore>> {
    let store = PostgresStore::connect(&PostgresConfig::from_url(url)?).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<Arc<DynStore>> {
    Err(feature_off("url", "postgres"))
}

#[cfg(feature = "dynamodb")]
async fn dynamodb(url: &str) -> Result<Arc<DynStore>> {
    let store = DynamoDbStore::connect(&DynamoDbConfig::from_url(url)?).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "dynamodb"))]
async fn dynamodb(_url: &str) -> Result<Arc<DynStore>> {
    Err(feature_off("url", "dynamodb"))
}
