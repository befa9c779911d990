//! The suite as one function, for a backend that wants a single call rather than a test per
//! case (a third-party backend's test, a doctest, an example).

use std::cell::Cell;
use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::future::LocalBoxFuture;

use crate::harness::IdKind;
use crate::{Fixture, SetupContext, run_case};

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its group: the module of the tests [`crate::conformance_suite!`] writes (`users_uuid`,
    /// `kv`, `tables`, ...), one per line of the registry and id kind.
    pub group: &'static str,
    /// Its name, the name of its function.
    pub name: &'static str,
    /// The id kind its user store must use.
    pub id_kind: IdKind,
    /// The suite that runs it besides [`Suite::All`] (or `Suite::All` alone).
    pub suite: Suite,
    /// Runs it on a fixture; it fails by panicking.
    pub run: for<'a> fn(&'a Fixture) -> LocalBoxFuture<'a, ()>,
}

/// Every case of the suite, in the order [`crate::conformance_suite!`] declares them.
#[must_use]
// The registry pushes one case per case and id kind, each behind the check of the case's id
// kinds, which no `vec![]` can hold.
#[allow(clippy::vec_init_then_push)]
pub fn cases() -> Vec<Case> {
    crate::__with_cases!(__case_list)
}

/// Which cases [`run_suite`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Suite {
    /// The key-value cases (`kv` and `kv_races`): for a store that implements only `KvStore` (the fixture's `auth`
    /// is not used).
    Kv,
    /// The user, OAuth account and access token cases, with both id kinds: for a store that
    /// implements only the user traits (the fixture's `kv` is not used).
    Users,
    /// The tables cases, `tables`, `edges`, `schema_edges`, `expressions`, `scans`,
    /// `projections`, `index_projections`, `records`, `transactions`, `differential` and `races`: for a store that
    /// implements `TableStore` (give the fixture one with
    /// `Fixture::with_tables`, and its transfer store with `Fixture::with_transfer`, which the
    /// `edges` case on versions imports records through).
    Tables,
    /// Every case: every store, bad input, load, how long big batches hold a runtime thread
    /// (`kv_holds`), spans and the model-based sequences.
    All,
}

impl Suite {
    fn includes(self, case: &Case) -> bool {
        self == Self::All || case.suite == self
    }
}

/// Runs every case of `suite` in turn, each on a fresh fixture from `setup` (cleaned up after
/// it), and panics at the end naming every case that failed. A `setup` that returns `None`
/// skips the case (see [`crate::server_url`]); the summary on stderr counts those.
///
/// Call it from a multi-threaded tokio runtime: the race cases run tasks in parallel.
pub async fn run_suite<S, SF>(suite: Suite, setup: S)
where
    S: Fn(SetupContext) -> SF,
    SF: Future<Output = Option<Fixture>>,
{
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for case in cases().into_iter().filter(|case| suite.includes(case)) {
        let ran = Cell::new(false);
        let setup_once = |ctx| {
            let fixture = setup(ctx);
            async {
                let fixture = fixture.await;
                ran.set(fixture.is_some());
                fixture
            }
        };
        let outcome = AssertUnwindSafe(run_case(case.name, case.id_kind, setup_once, case.run))
            .catch_unwind()
            .await;
        match outcome {
            Ok(()) if ran.get() => passed += 1,
            Ok(()) => skipped += 1,
            Err(_) => failed.push(format!("{}::{}", case.group, case.name)),
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "storekit-conformance: {passed} passed, {skipped} skipped, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "conformance cases failed: {}",
        failed.join(", ")
    );
}
