//! storekit's benchmark: every store operation on a backend, next to the same work done with
//! the raw driver (rusqlite, sqlx, aws-sdk-dynamodb) in the same run, so that what storekit
//! costs shows as a ratio that holds on a noisy machine.
//!
//! ```sh
//! cargo run --release --example bench -- --backend sqlite
//! cargo run --release --example bench --features postgres -- --backend postgres
//! eval "$(scripts/services.sh up)"   # DynamoDB Local, and STOREKIT_DYNAMODB_ENDPOINT
//! cargo run --release --example bench --all-features -- --backend all --json bench.jsonl
//! cargo run --release --example bench -- --backend sqlite --scale --scale-rows 100000
//! cargo run --release --example bench --features sqlite,postgres -- --backend postgres \
//!     --copy --no-workloads
//! ```
//!
//! Options: `--backend memory|sqlite|postgres|dynamodb|all`; `--n N` items per `set_many` /
//! `delete_many` call (100); `--concurrency C` tasks in the concurrent mode (32); `--ops N` and
//! `--seconds S`, the most calls and the longest time one measurement may take (20000, 1);
//! `--rounds R` runs everything R times, storekit first in odd rounds and the raw driver first
//! in even ones, and keeps each row's median round (1);
//! `--only kv|users|tables` runs that workload only (`users` includes `tokens`; all by default);
//! `--json FILE` also writes one JSON object per measurement (and per backend its peak
//! memory: see below); `--scale`, after the workloads,
//! fills 10^6 items and users (`--scale-rows N`) and measures random reads at 10^4 and at that
//! size, with the SQLite file's size and its WAL's largest size during the fill, then two rows
//! beside the raw driver reading the same rows of the same database (see `listing.rs` and
//! `raw_scale.rs`): `kv.keys`, every key of the filled namespace listed to the end, and
//! `Table::query`, a partition of 10^5 records (a tenth of `--scale-rows` if fewer) of a
//! table by partition and sort key, read page after page; each with its time, items per
//! second, `storekit/raw` and the peak memory it added;
//! `--copy`, after the workloads, with `--backend postgres` or `all` and both the `sqlite` and
//! `postgres` features, times `storekit::copy::copy` of `--copy-rows N` kv items (100000) from
//! a SQLite store into PostgreSQL beside a hand-written copy with rusqlite and sqlx (see
//! `copy.rs`), `--rounds` times; `--no-workloads` skips the workloads, to run only `--scale`
//! or `--copy`.
//! PostgreSQL is found at `STOREKIT_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), DynamoDB at `STOREKIT_DYNAMODB_ENDPOINT`.
//! Each run works on fresh tables (a temporary SQLite file, a `bench_<pid>` schema or table
//! prefix) and removes them afterwards.
//!
//! Workloads, each run by one task (`seq`) and by 32 tasks on the multi-thread runtime
//! (`conc32`), storekit through `storekit::connect(url)` and `Stores`' trait objects:
//! - `kv` (1 KiB values): set, get, contains of a present and of an absent key, list all keys,
//!   delete, set_many and delete_many of N items;
//! - `users`: create, get by id, get by email in another letter case, update, delete;
//! - `tokens`: create, get with a max age, delete;
//! - `tables`, on the catalogue's `products` table (by `id`, and by `name` newest first in
//!   `product-name-index`) through `Stores::tables` and a typed `Table`: insert (create-only),
//!   get, update (read, change price and time, write at the version read), and `index_query`,
//!   the first page of 20 products of one of 50 names, newest first. The table is created
//!   before the phases and dropped after them, in each mode;
//! - `copy` (`--copy`, one row, mode `conc4` for the four writes in flight): every kv item of a
//!   SQLite store (1 KiB values, a quarter with a TTL) copied into empty PostgreSQL tables by
//!   `storekit::copy::copy` (kv only, batches of 500, verification off and the count checked
//!   afterwards) and by the raw drivers: one rusqlite scan of the same file in batches of 500,
//!   each one sqlx `UNNEST` upsert with the deadlines, four in flight. Both read the SQLite file
//!   while they write, so both rates include the read; the time each takes to read the source
//!   alone is printed under the row. Rates are items per second; the issue's target is a
//!   `storekit/raw` of at least 0.5.
//!
//! The raw baselines do the same work on the best layout known for each database (see their
//! modules) for every `kv` operation and for user create and get, and on the layout of
//! storekit's own backend for every `tables` operation, so that what those rows show is the
//! cost of the tables layer, not of a layout.
//!
//! Columns of the table: `storekit ops/s` and `raw ops/s` are operations per second (for
//! set_many, delete_many and list: keys per second; for copy: items per second); `storekit/raw` is their ratio (above 1:
//! storekit is faster); `p50 µs` and `p99 µs` are the median and 99th percentile latency of one
//! call, `errors` the calls that failed or answered wrongly (a miss where a hit was due), and
//! `requests/op` the HTTP requests per call counted by the DynamoDB client, retries included;
//! where two figures share a cell they are storekit's / raw's.
//!
//! Under each backend's tables, the bench prints the process's peak memory (resident set
//! size, `VmHWM` from `/proc/self/status`, reset before each backend) during that backend's
//! run: workloads, `--scale` and `--copy`, storekit's and the raw driver's (see `peak.rs`).

// A command-line program: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backends;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod copy;
mod listing;
mod measure;
mod peak;
#[cfg(feature = "dynamodb")]
mod raw_dynamodb;
#[cfg(feature = "postgres")]
mod raw_postgres;
mod raw_scale;
#[cfg(feature = "sqlite")]
mod raw_sqlite;
mod report;
mod scale;
mod targets;
mod workloads;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use storekit::BoxError;

use backends::{bench, bench_scale};
use measure::{Limits, Mode, Runner};

const USAGE: &str = "usage: bench --backend memory|sqlite|postgres|dynamodb|all [--n N] \
                     [--concurrency C] [--ops N] [--seconds S] [--rounds R] [--only kv|users|tables] \
                     [--json FILE] [--scale] \
                     [--scale-rows N] [--copy] [--copy-rows N] [--no-workloads]";

/// The backends, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
    DynamoDb,
}

impl Backend {
    const ALL: [Self; 4] = [Self::Memory, Self::Sqlite, Self::Postgres, Self::DynamoDb];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::DynamoDb => "dynamodb",
        }
    }

    fn compiled_in(self) -> bool {
        match self {
            Self::Memory => true,
            Self::Sqlite => cfg!(feature = "sqlite"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::DynamoDb => cfg!(feature = "dynamodb"),
        }
    }
}

/// The command line.
#[derive(Debug)]
struct Args {
    backends: Vec<Backend>,
    plan: Plan,
    json: Option<PathBuf>,
    rounds: usize,
    scale: bool,
    scale_rows: usize,
    /// `--copy-rows` when `--copy` is given.
    copy: Option<usize>,
    workloads: bool,
}

/// How every backend is measured.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) n: usize,
    pub(crate) concurrency: usize,
    pub(crate) limits: Limits,
    /// Measure the raw baseline before storekit. Rounds alternate, so that a burst of load on
    /// the shared machine does not always fall on the same peer.
    pub(crate) raw_first: bool,
    /// `--only`: the one workload to run, so that work on one store is measured in minutes.
    pub(crate) only: Option<Workload>,
}

/// A workload `--only` can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    Kv,
    /// Users and their tokens: the token phases work on the users this workload creates.
    Users,
    Tables,
}

impl Workload {
    fn parse(text: &str) -> Result<Self, BoxError> {
        match text {
            "kv" => Ok(Self::Kv),
            "users" => Ok(Self::Users),
            "tables" => Ok(Self::Tables),
            _ => Err(format!("--only: {text:?} is not kv, users or tables\n{USAGE}").into()),
        }
    }
}

impl Plan {
    /// Whether `workload` is measured in this run.
    pub(crate) fn runs(&self, workload: Workload) -> bool {
        self.only.is_none_or(|only| only == workload)
    }

    pub(crate) fn runner(
        &self,
        peer: &'static str,
        mode: Mode,
        requests: Option<Arc<AtomicU64>>,
    ) -> Runner {
        Runner {
            peer,
            mode,
            limits: self.limits,
            requests,
        }
    }
}

impl Args {
    /// Parses the arguments after the program name; `None` if help was asked for.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Self>, BoxError> {
        let mut backends = None;
        let mut plan = Plan {
            raw_first: false,
            only: None,
            n: 100,
            concurrency: 32,
            limits: Limits {
                max_ops: 20_000,
                window: Duration::from_secs(1),
            },
        };
        let (mut json, mut rounds, mut scale, mut scale_rows) = (None, 1, false, 1_000_000);
        let (mut copy, mut copy_rows, mut workloads) = (false, 100_000, true);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
            match flag.as_str() {
                "--backend" => backends = Some(parse_backends(&value()?)?),
                "--n" => plan.n = positive(&flag, &value()?)?,
                "--concurrency" => plan.concurrency = positive(&flag, &value()?)?,
                "--ops" => plan.limits.max_ops = positive(&flag, &value()?)?,
                "--seconds" => {
                    let text = value()?;
                    plan.limits.window = text
                        .parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or(format!("--seconds: {text:?} is not a duration in seconds"))?;
                }
                "--json" => json = Some(PathBuf::from(value()?)),
                "--rounds" => rounds = positive(&flag, &value()?)?,
                "--only" => plan.only = Some(Workload::parse(&value()?)?),
                "--scale" => scale = true,
                "--scale-rows" => scale_rows = positive(&flag, &value()?)?,
                "--copy" => copy = true,
                "--copy-rows" => copy_rows = positive(&flag, &value()?)?,
                "--no-workloads" => workloads = false,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        let backends = backends.ok_or(format!("--backend is required\n{USAGE}"))?;
        if copy {
            check_copy(&backends)?;
        }
        Ok(Some(Self {
            backends,
            plan,
            json,
            rounds,
            scale,
            scale_rows,
            copy: copy.then_some(copy_rows),
            workloads,
        }))
    }
}

/// `--copy` reads SQLite and writes PostgreSQL: both must be compiled in, and PostgreSQL
/// chosen.
fn check_copy(backends: &[Backend]) -> Result<(), BoxError> {
    if !(Backend::Sqlite.compiled_in() && Backend::Postgres.compiled_in()) {
        return Err(
            "--copy copies from SQLite into PostgreSQL, and this build lacks one of them: \
             build with --features sqlite,postgres (or --all-features)"
                .into(),
        );
    }
    if !backends.contains(&Backend::Postgres) {
        return Err("--copy is measured on PostgreSQL: use --backend postgres or all".into());
    }
    Ok(())
}

fn positive(flag: &str, text: &str) -> Result<usize, BoxError> {
    match text.parse::<usize>() {
        Ok(number) if number > 0 => Ok(number),
        _ => Err(format!("{flag}: {text:?} is not a positive whole number").into()),
    }
}

/// One backend, or `all` of those compiled in. Asking for one that is not compiled in is an
/// error that says how to build it; `all` says which it leaves out.
fn parse_backends(text: &str) -> Result<Vec<Backend>, BoxError> {
    if text == "all" {
        let (on, off): (Vec<Backend>, Vec<Backend>) =
            Backend::ALL.into_iter().partition(|b| b.compiled_in());
        for backend in off {
            eprintln!(
                "bench: skipping {0}: build with --features {0} (or --all-features)",
                backend.name()
            );
        }
        return Ok(on);
    }
    let backend = Backend::ALL
        .into_iter()
        .find(|b| b.name() == text)
        .ok_or(format!("unknown backend {text:?}\n{USAGE}"))?;
    if !backend.compiled_in() {
        return Err(
            format!("the {text} backend is not compiled in: build with --features {text}").into(),
        );
    }
    Ok(vec![backend])
}

// Errors are shown with Display and their sources: returning them from `main` would print
// their Debug form.
fn main() -> ExitCode {
    match parse_and_run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {}", measure::with_sources(&*error));
            ExitCode::FAILURE
        }
    }
}

fn parse_and_run() -> Result<(), BoxError> {
    let Some(args) = Args::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut json = match &args.json {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    for backend in &args.backends {
        let since_reset = peak::reset();
        if args.workloads {
            workloads(&args, *backend, json.as_mut()).await?;
        }
        if args.scale {
            let found = bench_scale(*backend, &args.plan, args.scale_rows).await?;
            println!("{}", report::scale_markdown(&found));
            if let Some(out) = &mut json {
                for line in report::scale_json(&found) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        if let (Some(rows), Backend::Postgres) = (args.copy, backend) {
            copy_phase(rows, args.rounds, json.as_mut()).await?;
        }
        if let Some(kib) = peak::peak_kib() {
            println!("{}\n", peak::markdown(backend.name(), kib, since_reset));
            if let Some(out) = &mut json {
                writeln!(out, "{}", peak::json_line(backend.name(), kib, since_reset))?;
            }
        }
    }
    if let Some(mut out) = json {
        out.flush()?;
    }
    Ok(())
}

type JsonOut = std::io::BufWriter<std::fs::File>;

/// Every workload on one backend, `--rounds` times, and the median rows.
async fn workloads(
    args: &Args,
    backend: Backend,
    json: Option<&mut JsonOut>,
) -> Result<(), BoxError> {
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!(
            "bench: {} round {round} of {} ...",
            backend.name(),
            args.rounds
        );
        let plan = Plan {
            raw_first: round % 2 == 0,
            ..args.plan.clone()
        };
        rounds.push(bench(backend, &plan).await?);
    }
    let samples = measure::median_of(rounds);
    println!("{}", report::markdown(&samples));
    if let Some(out) = json {
        for sample in &samples {
            writeln!(out, "{}", report::json_line(sample))?;
        }
    }
    Ok(())
}

/// `--copy`: `rows` kv items from SQLite into PostgreSQL, by storekit and by the raw drivers.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
async fn copy_phase(
    rows: usize,
    rounds: usize,
    json: Option<&mut JsonOut>,
) -> Result<(), BoxError> {
    eprintln!("bench: postgres --copy of {rows} kv items from SQLite ...");
    let found = copy::run(rows, rounds).await?;
    println!("{}", report::copy_markdown(&found));
    if let Some(out) = json {
        for line in report::copy_json(&found) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

// Refused when the arguments are parsed; this is never reached.
#[cfg(not(all(feature = "sqlite", feature = "postgres")))]
async fn copy_phase(_: usize, _: usize, _: Option<&mut JsonOut>) -> Result<(), BoxError> {
    check_copy(&[Backend::Postgres])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (workload, op, mode, peer) that a backend must report.
    fn expected(raw: bool) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
        let kv = [
            "set",
            "get",
            "contains_hit",
            "contains_miss",
            "list",
            "delete",
            "set_many",
            "delete_many",
        ];
        let users = ["create", "get", "get_by_email", "update", "delete"];
        let tokens = ["create", "get", "delete"];
        let tables = ["insert", "get", "update", "index_query"];
        let mut rows = Vec::new();
        for mode in ["seq", "conc4"] {
            let ops = kv
                .iter()
                .map(|op| ("kv", *op))
                .chain(users.iter().map(|op| ("users", *op)))
                .chain(tokens.iter().map(|op| ("tokens", *op)))
                .chain(tables.iter().map(|op| ("tables", *op)));
            for (workload, op) in ops {
                rows.push((workload, op, mode, "storekit"));
                let compared = matches!(workload, "kv" | "tables")
                    || (workload == "users" && matches!(op, "create" | "get"));
                if raw && compared {
                    rows.push((workload, op, mode, "raw"));
                }
            }
        }
        rows
    }

    fn tiny_plan() -> Plan {
        Plan {
            raw_first: false,
            only: None,
            n: 10,
            concurrency: 4,
            limits: Limits {
                max_ops: 40,
                window: Duration::from_millis(200),
            },
        }
    }

    async fn check(backend: Backend, raw: bool) -> Result<(), BoxError> {
        let samples = bench(backend, &tiny_plan()).await?;
        for (workload, op, mode, peer) in expected(raw) {
            let sample = samples.iter().find(|s| {
                s.op.workload == workload
                    && s.op.name == op
                    && s.mode.label() == mode
                    && s.peer == peer
            });
            let Some(sample) = sample else {
                panic!(
                    "{}: no row for {workload} {op} {mode} {peer}",
                    backend.name()
                );
            };
            assert!(
                sample.ops_per_sec() > 0.0,
                "{}: {workload} {op} {mode} {peer} did nothing",
                backend.name()
            );
            assert_eq!(
                sample.errors,
                0,
                "{}: {workload} {op} {mode} {peer} had errors",
                backend.name()
            );
        }
        assert!(!report::markdown(&samples).is_empty());
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_reports_every_operation_without_errors() -> Result<(), BoxError> {
        check(Backend::Memory, false).await
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reports_every_operation_and_its_baseline_without_errors() -> Result<(), BoxError>
    {
        check(Backend::Sqlite, true).await
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_scale_measures_reads_and_file_sizes() -> Result<(), BoxError> {
        let found = bench_scale(Backend::Sqlite, &tiny_plan(), 1500).await?;
        // 1500 rows is below the 10^4 of the first measurement, so there is one size only.
        assert_eq!(
            found.points.len(),
            4,
            "kv.get and get_by_email, seq and conc"
        );
        assert!(
            found
                .points
                .iter()
                .all(|p| p.sample.errors == 0 && p.sample.ops_per_sec() > 0.0)
        );
        assert!(found.db_bytes.is_some_and(|bytes| bytes > 0));
        check_listings(&found, true);
        Ok(())
    }

    /// Both listings read everything, by both peers where there is a raw driver.
    fn check_listings(found: &scale::ScaleReport, raw: bool) {
        let ops: Vec<_> = found.listings.iter().map(|l| (l.op, l.rows)).collect();
        assert_eq!(ops, [("kv.keys", 1500), ("Table::query", 150)]);
        for listing in &found.listings {
            let reads = std::iter::once(&listing.storekit).chain(&listing.raw);
            assert_eq!(reads.clone().count(), if raw { 2 } else { 1 });
            for read in reads {
                assert_eq!((read.errors, read.items), (0, listing.rows as u64));
            }
        }
        let table = report::scale_markdown(found);
        assert!(table.contains("| kv.keys | 1500 |") && table.contains("| Table::query | 150 |"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_scale_lists_every_key_and_record() -> Result<(), BoxError> {
        let found = bench_scale(Backend::Memory, &tiny_plan(), 1500).await?;
        check_listings(&found, false);
        Ok(())
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_refused() -> Result<(), BoxError> {
        let args = |line: &str| Args::parse(line.split_whitespace().map(str::to_owned));
        let Some(parsed) = args("--backend memory --n 7 --concurrency 3 --rounds 3 --scale")?
        else {
            panic!("not a help request");
        };
        assert_eq!(parsed.backends, [Backend::Memory]);
        assert_eq!(
            (
                parsed.plan.n,
                parsed.plan.concurrency,
                parsed.rounds,
                parsed.scale
            ),
            (7, 3, 3, true)
        );
        assert_eq!((parsed.copy, parsed.workloads), (None, true));
        assert_eq!(parsed.plan.only, None);
        let Some(parsed) = args("--backend memory --only tables")? else {
            panic!("not a help request");
        };
        assert!(parsed.plan.runs(Workload::Tables) && !parsed.plan.runs(Workload::Kv));
        assert!(args("--backend memory --only tokens").is_err());
        assert!(args("--backend nosuch").is_err());
        assert!(
            args("--backend memory --copy").is_err(),
            "--copy is measured on PostgreSQL"
        );
        assert!(args("--backend memory --n 0").is_err());
        assert!(args("--n 5").is_err(), "--backend is required");
        assert!(args("--help")?.is_none());
        if cfg!(all(feature = "sqlite", feature = "postgres")) {
            let Some(parsed) = args("--backend all --copy --copy-rows 500 --no-workloads")? else {
                panic!("not a help request");
            };
            assert!(parsed.backends.contains(&Backend::Postgres));
            assert_eq!((parsed.copy, parsed.workloads), (Some(500), false));
            assert!(args("--backend postgres --copy --copy-rows 0").is_err());
        } else {
            assert!(
                args("--backend all --copy").is_err(),
                "--copy needs SQLite and PostgreSQL compiled in"
            );
        }
        Ok(())
    }

    /// `--copy` with 500 items, on `STOREKIT_POSTGRES_URL`: a loud skip without it, a failure
    /// when `CI` is set.
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_copy_measures_both_peers_without_errors() -> Result<(), BoxError> {
        match std::env::var("STOREKIT_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {}
            _ if std::env::var_os("CI").is_some() => {
                panic!(
                    "STOREKIT_POSTGRES_URL is not set and CI is: run \
                     `eval \"$(scripts/services.sh up)\"` first"
                )
            }
            _ => {
                eprintln!("SKIPPED: bench --copy: STOREKIT_POSTGRES_URL is not set");
                return Ok(());
            }
        }
        let found = copy::run(500, 1).await?;
        let rate = |peer| {
            let sample = found.samples.iter().find(|s| s.peer == peer);
            let Some(sample) = sample else {
                panic!("no {peer} row");
            };
            assert_eq!(sample.errors, 0, "{peer} copy had errors");
            assert_eq!(sample.items, 500, "{peer} copied every item");
            sample.ops_per_sec()
        };
        let ratio = rate("storekit") / rate("raw");
        assert!(ratio > 0.0 && ratio.is_finite(), "storekit/raw is {ratio}");
        assert!(report::copy_markdown(&found).contains("copy sqlite→postgres ×500"));
        assert_eq!(report::copy_json(&found).len(), 3);
        Ok(())
    }
}
