//! What a backend hands the suite ([`Fixture`]), and how a case is run around it.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use storekit_core::table::TableStore;
use storekit_core::transfer::TransferStore;
use storekit_core::{DynAuthStore, DynKvStore, MemoryStore};

pub use storekit_core::IdKind;

/// Reads everything a backend has stored, as text, so a case can look for what must not be
/// there (a raw token).
pub type DumpFn = Box<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// Drops everything the fixture created.
pub type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// How long the suite's fixtures keep expired kv items (their config's `keep_expired`), so
/// that the `get_stale` case can read them; a store that keeps none passes a shorter form.
pub const KEEP_EXPIRED: std::time::Duration = std::time::Duration::from_secs(2);

/// What the suite needs from a backend for one case: fresh, empty stores.
#[non_exhaustive]
pub struct Fixture {
    /// Users, OAuth accounts and tokens, with the id kind the case asked for.
    pub auth: Arc<DynAuthStore>,
    /// The key-value store.
    pub kv: Arc<DynKvStore>,
    /// Where backends legitimately differ, what this one does.
    pub capabilities: Capabilities,
    tables: Option<Arc<dyn TableStore>>,
    neighbour: Option<Arc<dyn TableStore>>,
    transfer: Option<Arc<dyn TransferStore>>,
    dump: DumpFn,
    cleanup: Option<CleanupFn>,
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
    /// Stores to test, how to dump their storage, and how to drop it afterwards.
    pub fn new(
        auth: Arc<DynAuthStore>,
        kv: Arc<DynKvStore>,
        dump: DumpFn,
        cleanup: CleanupFn,
    ) -> Self {
        Self {
            auth,
            kv,
            capabilities: Capabilities::default(),
            tables: None,
            neighbour: None,
            transfer: None,
            dump,
            cleanup: Some(cleanup),
        }
    }

    /// Declares where this backend differs from the default [`Capabilities`].
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Adds the backend's tables store, which the `tables` cases need. Its tables must be
    /// dropped by the fixture's cleanup (or live in a database the cleanup removes).
    #[must_use]
    pub fn with_tables(mut self, tables: Arc<dyn TableStore>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// The tables store; the `tables` cases panic without one (see [`Fixture::with_tables`]).
    ///
    /// # Panics
    /// When the fixture has no tables store.
    #[must_use]
    pub fn tables(&self) -> &Arc<dyn TableStore> {
        self.tables
            .as_ref()
            .expect("the tables cases need Fixture::with_tables")
    }

    /// Adds a second tables store over the same database as [`Fixture::tables`] but with
    /// another table prefix (its own catalog), which the exact-name case shares a table with.
    /// Its tables must be dropped by the fixture's cleanup too. A backend without prefixes
    /// (memory) leaves it out: the neighbour is then the tables store itself.
    #[must_use]
    pub fn with_neighbour_tables(mut self, tables: Arc<dyn TableStore>) -> Self {
        self.neighbour = Some(tables);
        self
    }

    /// The neighbour tables store (see [`Fixture::with_neighbour_tables`]), else the tables
    /// store.
    ///
    /// # Panics
    /// When the fixture has no tables store.
    #[must_use]
    pub fn neighbour_tables(&self) -> &Arc<dyn TableStore> {
        self.neighbour.as_ref().unwrap_or_else(|| self.tables())
    }

    /// Adds the backend's transfer store (export and import for `storekit copy`), which the
    /// `transfer` cases need.
    #[must_use]
    pub fn with_transfer(mut self, transfer: Arc<dyn TransferStore>) -> Self {
        self.transfer = Some(transfer);
        self
    }

    /// The transfer store; the `transfer` cases panic without one.
    ///
    /// # Panics
    /// When the fixture has no transfer store (see [`Fixture::with_transfer`]).
    #[must_use]
    pub fn transfer(&self) -> &Arc<dyn TransferStore> {
        self.transfer
            .as_ref()
            .expect("the transfer cases need Fixture::with_transfer")
    }

    /// A fixture of every store on one in-memory backend.
    #[must_use]
    pub fn memory(store: Arc<MemoryStore>) -> Self {
        let dumped = store.clone();
        Self::new(
            store.clone(),
            store.clone(),
            Box::new(move || {
                let text = dumped.dump();
                async move { text }.boxed()
            }),
            Box::new(|| async {}.boxed()),
        )
        .with_tables(store.clone())
        .with_transfer(store)
    }

    /// Everything the backend stored, as text.
    pub async fn dump(&self) -> String {
        (self.dump)().await
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

/// Runs one case: builds the fixture, runs the case, and always cleans up before reporting.
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
    let Some(mut fixture) = setup(ctx).await else {
        return;
    };
    let outcome = AssertUnwindSafe(case(&fixture)).catch_unwind().await;
    if let Some(cleanup) = fixture.cleanup.take() {
        cleanup().await;
    }
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
