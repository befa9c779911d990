//! What a backend hands the suite ([`Fixture`]), and how a case is run around it.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use storekit_core::admin::Admin;
use storekit_core::table::DynTableStore;
use storekit_core::transfer::TransferStore;
use storekit_core::{DynAuthStore, DynKvStore, DynStore, MemoryStore};

pub use storekit_core::IdKind;

/// How long the suite's fixtures keep expired kv items (their config's `keep_expired`), so
/// that the `get_stale` case can read them; a store that keeps none passes a shorter form.
pub const KEEP_EXPIRED: std::time::Duration = std::time::Duration::from_secs(2);

/// What the suite needs from a backend for one case: fresh, empty stores, made from one
/// [`Store`](storekit_core::Store) ([`Fixture::new`]).
///
/// After the case, whether it passed or not, the harness drops every table of the store and
/// of its neighbour ([`Admin::drop_tables`], which fails the case if it fails), then runs the
/// fixture's teardown ([`Fixture::with_teardown`]). A case reads what the store holds
/// through [`Admin::dump`] ([`Fixture::dump`]).
#[non_exhaustive]
pub struct Fixture {
    /// Users, OAuth accounts and tokens, with the id kind the case asked for.
    pub auth: Arc<DynAuthStore>,
    /// The key-value store.
    pub kv: Arc<DynKvStore>,
    /// Where backends legitimately differ, what this one does.
    pub capabilities: Capabilities,
    tables: Option<Arc<DynTableStore>>,
    transfer: Option<Arc<dyn TransferStore>>,
    admin: Arc<dyn Admin>,
    neighbour: Option<(Arc<DynTableStore>, Arc<dyn Admin>)>,
    teardown: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("auth", &self.auth)
            .field("kv", &self.kv)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Every store of one backend, from one object: its users, kv, tables and transfer stores
    /// are the parts of `store`, which also dumps what it holds and drops its tables after
    /// the case.
    #[must_use]
    pub fn new(store: Arc<DynStore>) -> Self {
        Self {
            auth: store.clone(),
            kv: store.clone(),
            capabilities: Capabilities::default(),
            tables: Some(store.clone()),
            transfer: Some(store.clone()),
            admin: store,
            neighbour: None,
            teardown: None,
        }
    }

    /// A store that implements only some of the store traits (a key-value store alone runs
    /// [`Suite::Kv`](crate::Suite::Kv), a user store alone [`Suite::Users`](crate::Suite::Users)),
    /// with a stand-in for the others; `admin` dumps what the store under test holds and drops
    /// it afterwards. It has no tables or transfer store unless given one
    /// ([`Fixture::with_tables`], [`Fixture::with_transfer`]).
    #[must_use]
    pub fn parts(auth: Arc<DynAuthStore>, kv: Arc<DynKvStore>, admin: Arc<dyn Admin>) -> Self {
        Self {
            auth,
            kv,
            capabilities: Capabilities::default(),
            tables: None,
            transfer: None,
            admin,
            neighbour: None,
            teardown: None,
        }
    }

    /// A fixture of every store on one in-memory backend.
    #[must_use]
    pub fn memory(store: Arc<MemoryStore>) -> Self {
        Self::new(store)
    }

    /// Declares where this backend differs from the default [`Capabilities`].
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Adds a second store over the same database as the fixture's but with another table
    /// prefix (its own catalog), whose tables store the exact-name case shares a table with.
    /// Its tables are dropped after the case, before the fixture's own. A backend without
    /// prefixes (memory) leaves it out: the neighbour is then the tables store itself.
    #[must_use]
    pub fn with_neighbour(mut self, store: Arc<DynStore>) -> Self {
        self.neighbour = Some((store.clone(), store));
        self
    }

    /// Adds a tables store to a fixture made by [`Fixture::parts`] (one made by
    /// [`Fixture::new`] has its store's), for a backend of tables without users or kv.
    #[must_use]
    pub fn with_tables(mut self, tables: Arc<DynTableStore>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// Adds a transfer store to a fixture made by [`Fixture::parts`] (one made by
    /// [`Fixture::new`] has its store's), which the `transfer` cases and the `edges` case on
    /// versions need.
    #[must_use]
    pub fn with_transfer(mut self, transfer: Arc<dyn TransferStore>) -> Self {
        self.transfer = Some(transfer);
        self
    }

    /// What removes the place the stores lived in (a database file, a PostgreSQL schema) once
    /// their tables are dropped: awaited once after the case, whether it passed or not.
    #[must_use]
    pub fn with_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(teardown.boxed());
        self
    }

    /// The tables store; the `tables` cases panic without one (see [`Fixture::with_tables`]).
    ///
    /// # Panics
    /// When the fixture has no tables store.
    #[must_use]
    pub fn tables(&self) -> &Arc<DynTableStore> {
        self.tables
            .as_ref()
            .expect("the tables cases need Fixture::new or Fixture::with_tables")
    }

    /// The neighbour's tables store (see [`Fixture::with_neighbour`]), else the tables store.
    ///
    /// # Panics
    /// When the fixture has no tables store.
    #[must_use]
    pub fn neighbour_tables(&self) -> &Arc<DynTableStore> {
        match &self.neighbour {
            Some((tables, _)) => tables,
            None => self.tables(),
        }
    }

    /// The transfer store (export and import for `storekit copy`); the `transfer` cases panic
    /// without one (see [`Fixture::with_transfer`]).
    ///
    /// # Panics
    /// When the fixture has no transfer store.
    #[must_use]
    pub fn transfer(&self) -> &Arc<dyn TransferStore> {
        self.transfer
            .as_ref()
            .expect("the transfer cases need Fixture::new or Fixture::with_transfer")
    }

    /// Everything the backend stored, as text ([`Admin::dump`]).
    ///
    /// # Panics
    /// When the backend cannot dump.
    pub async fn dump(&self) -> String {
        self.admin.dump().await.expect("dump")
    }

    /// Drops the neighbour's tables and the store's, then runs the teardown.
    async fn clean_up(self) {
        if let Some((_, neighbour)) = &self.neighbour {
            neighbour
                .drop_tables()
                .await
                .expect("drop the neighbour's tables");
        }
        self.admin.drop_tables().await.expect("drop_tables");
        if let Some(teardown) = self.teardown {
            teardown.await;
        }
    }
}

/// The documented differences between backends, so that the cases can assert each exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `purge_expired` deletes expired items and counts them (the SQL backends and memory).
    /// `false` where the database expires items itself and `purge_expired` returns 0
    /// (DynamoDB's native TTL).
    pub purge_on_demand: bool,
    /// `put_many` and `delete_many` on records are all or nothing (SQL and memory: one
    /// transaction). `false` on DynamoDB, where they are `BatchWriteItem` calls of 25, or one
    /// write per record on a table with unique indexes.
    pub atomic_record_batches: bool,
    /// A page's [`QueryPage::read`](storekit_core::table::QueryPage::read) is exact: the
    /// records from its cursor to its end (memory and SQL). `false` on DynamoDB, where it is
    /// the `ScannedCount` of the page's requests, which may read past the page's end.
    pub exact_read_counts: bool,
    /// A query index the schema no longer declares stays in the live table and is listed by
    /// every `ensure_table` (DynamoDB, where the database keeps it). `false` on SQL and
    /// memory, which keep their indexes themselves: they forget it once listed, and rebuild
    /// it when it is declared again.
    pub undeclared_indexes_stay: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            purge_on_demand: true,
            atomic_record_batches: true,
            exact_read_counts: true,
            undeclared_indexes_stay: false,
        }
    }
}

impl Capabilities {
    /// Expired items are removed by the database itself; `purge_expired` returns 0.
    #[must_use]
    pub fn database_expires_items(mut self) -> Self {
        self.purge_on_demand = false;
        self
    }

    /// Record batches are not atomic: a failed `put_many` may have written part of it.
    #[must_use]
    pub fn record_batches_not_atomic(mut self) -> Self {
        self.atomic_record_batches = false;
        self
    }

    /// Query indexes a schema does not declare stay live and listed (the database keeps
    /// them).
    #[must_use]
    pub fn undeclared_indexes_stay(mut self) -> Self {
        self.undeclared_indexes_stay = true;
        self
    }

    /// A page's read count may include records past its end that the database read ahead.
    #[must_use]
    pub fn read_counts_include_read_ahead(mut self) -> Self {
        self.exact_read_counts = false;
        self
    }
}

/// What the suite tells a backend's setup.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SetupContext {
    /// The name of the case, for logs.
    pub case: &'static str,
    /// The id kind the user store must use.
    pub id_kind: IdKind,
    /// A table prefix (a valid identifier) that no other case uses: `sk<random>_`.
    pub prefix: String,
}

/// The address of a test server: the environment variable `var` if set, else, for
/// `STOREKIT_POSTGRES_URL` and `STOREKIT_DYNAMODB_ENDPOINT`, a container that this test binary
/// starts on first use and shares between its cases (see [`crate::containers`]).
///
/// Without either the case is skipped with a loud message, unless `CI` is set, where a missing
/// server fails the run: CI must never pass by skipping.
#[must_use]
pub fn server_url(var: &str) -> Option<String> {
    if let Ok(url) = std::env::var(var)
        && !url.is_empty()
    {
        return Some(url);
    }
    let why = match crate::containers::Server::for_env_var(var) {
        Some(server) => match crate::containers::url(server) {
            Ok(url) => return Some(url),
            Err(why) => why,
        },
        None => format!("{var} is not set"),
    };
    let fix = "run `eval \"$(scripts/services.sh up)\"` (local servers) \
               or `eval \"$(scripts/container-images.sh up)\"` (containers) first";
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI is set, so this fails instead of skipping: {fix}");
    }
    skip_loudly(var, &format!("SKIPPED: {why}; {fix}"));
    None
}

/// Says once per binary and variable, on stderr past libtest's capture, that cases skip.
fn skip_loudly(var: &str, message: &str) {
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .map(|mut said| said.insert(var.to_owned()))
        .unwrap_or(true);
    if first {
        let _ = writeln!(std::io::stderr().lock(), "storekit-conformance: {message}");
    }
}

/// Runs one case: builds the fixture, runs the case, and always cleans up (see [`Fixture`])
/// before reporting.
pub async fn run_case<S, SF, C>(name: &'static str, id_kind: IdKind, setup: S, case: C)
where
    S: FnOnce(SetupContext) -> SF,
    SF: Future<Output = Option<Fixture>>,
    C: AsyncFnOnce(&Fixture),
{
    let ctx = SetupContext {
        case: name,
        id_kind,
        prefix: unique_prefix(),
    };
    let Some(fixture) = setup(ctx).await else {
        return;
    };
    let outcome = AssertUnwindSafe(case(&fixture)).catch_unwind().await;
    fixture.clean_up().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn unique_prefix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no randomness for a test prefix: {e}"));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk{hex}_")
}
