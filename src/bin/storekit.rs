//! `storekit`: create, export, check, copy and count storekit's stores on any backend.
//!
//! Exit status: 0 when all went well; 1 when `schema check` found differences or `copy` left
//! conflicts or unequal counts; 2 on an error (one line on stderr, never a backtrace).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use storekit::admin::ExportOptions;
use storekit::copy::{CopyOptions, CopySummary, Kind, NoProgress, Progress};
use storekit::schema::{Format, Target};
use storekit::stats::Scope;
use storekit::{Error, IdKind, Stores};

/// Create, export, check, copy and count storekit's stores on SQLite, PostgreSQL or DynamoDB.
///
/// URLs: sqlite://PATH, postgres://USER@HOST/DB, dynamodb://?region=R&endpoint=URL, each with
/// optional prefix= (table name prefix) and id=uuid|int (the kind of user ids).
#[derive(Debug, Parser)]
#[command(name = "storekit", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade everything the stores need (SQL migrations, DynamoDB tables with
    /// TTL); idempotent. Prints what it created and what was already there.
    Migrate {
        /// The database, e.g. sqlite://app.db or postgres://postgres@localhost/app.
        url: String,
    },
    /// Print the definitions storekit's stores need (Terraform, CloudFormation or SQL), with
    /// `--from URL` those of a live store and every table its catalog records (declared in
    /// code or adopted), or `schema check URL` to compare a live database with them.
    #[command(args_conflicts_with_subcommands = true)]
    Schema {
        #[command(subcommand)]
        check: Option<SchemaCommand>,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Copy every user (with OAuth accounts and token hashes), every live kv item (with its
    /// remaining TTL) and every table record (with its version) from one backend to another.
    /// Safe to run again: nothing is duplicated, and an interrupted copy resumes by running it
    /// again.
    Copy(CopyArgs),
    /// Count users, OAuth accounts, tokens, kv items per namespace and records per table.
    /// First says on stderr what counting each table will read (records, requests, read
    /// units), from the database's own figures.
    Stats {
        /// The database.
        url: String,
        /// Count only users, kv or tables.
        #[arg(long, value_parser = parse_kind)]
        only: Option<Kind>,
        /// Count only the kv items of this namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Print a shell completion script, e.g. `storekit completions bash > /etc/bash_completion.d/storekit`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Compare a live database with what this version of storekit expects; lists every
    /// difference and exits with 1 when there is any.
    Check {
        /// The database.
        url: String,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Export a live store: its backend, prefix and id kind, and every table its catalog
    /// records, as `migrate` and `ensure_table` made or adopted them (no code needed).
    #[arg(long, value_name = "URL", conflicts_with_all = ["backend", "prefix", "id"])]
    from: Option<String>,
    /// The backend to render for.
    #[arg(long, value_parser = ["dynamodb", "sqlite", "postgres"], default_value = "dynamodb")]
    backend: String,
    /// terraform or cloudformation for dynamodb, sql for sqlite and postgres (the default
    /// follows the backend).
    #[arg(long, value_parser = ["terraform", "cloudformation", "sql"])]
    format: Option<String>,
    /// The table name prefix, as the store's prefix= gives it.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The kind of user ids.
    #[arg(long, value_parser = ["uuid", "int"], default_value = "uuid")]
    id: String,
}

#[derive(Debug, Args)]
struct CopyArgs {
    /// The database to copy from.
    #[arg(long)]
    from: String,
    /// The database to copy to (migrated first).
    #[arg(long)]
    to: String,
    /// Copy only users, kv or tables.
    #[arg(long, value_parser = parse_kind)]
    only: Option<Kind>,
    /// Copy only the kv items of this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Items per read and per write (1 to 1000).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Skip comparing the counts of both sides at the end.
    #[arg(long)]
    no_verify: bool,
    /// Scan segments read at once per table (DynamoDB's parallel scan); default 4 from
    /// DynamoDB, 1 from SQL and memory.
    #[arg(long)]
    segments: Option<u32>,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// Print the copy's rate (items per second) at the end, for comparing with the bench's
    /// raw bulk insert.
    #[arg(long)]
    bench: bool,
}

fn parse_kind(name: &str) -> Result<Kind, String> {
    name.parse().map_err(|err: Error| err.to_string())
}

/// What a command concluded besides errors.
enum Outcome {
    Done,
    /// Differences found or a copy incomplete: exit 1.
    Unequal,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Unequal) => ExitCode::from(1),
        Err(err) => fail(&explain(&err)),
    }
}

/// The error and its causes, outermost first, each said once: a store's error names what
/// failed, its source says why (a refused connection, missing credentials).
fn explain(err: &Error) -> String {
    let mut line = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = next.source();
    }
    line
}

/// One line on stderr, exit 2.
fn fail(message: &str) -> ExitCode {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(std::io::stderr().lock(), "storekit: error: {line}");
    ExitCode::from(2)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// What a command is about to do, on stderr, each line marked, so that stdout stays the
/// command's answer.
fn note(lines: &str) {
    let mut err = std::io::stderr().lock();
    for line in lines.lines() {
        let _ = writeln!(err, "reading {line}");
    }
}

async fn run(command: Command) -> storekit::Result<Outcome> {
    match command {
        Command::Migrate { url } => migrate(&url).await,
        Command::Schema {
            check: Some(SchemaCommand::Check { url }),
            ..
        } => check(&url).await,
        Command::Schema {
            check: None,
            export,
        } => match &export.from {
            Some(url) => export_live(url, export.format.as_deref()).await,
            None => export_schema(&export),
        },
        Command::Copy(args) => copy(&args).await,
        Command::Stats {
            url,
            only,
            namespace,
        } => {
            let stores = connect(&url).await?;
            if only.is_none_or(|kind| kind == Kind::Tables) {
                note(&storekit::stats::plan(&stores).await?.to_string());
            }
            let stats = storekit::stats::stats(&stores, &Scope { only, namespace }).await?;
            let _ = write!(std::io::stdout().lock(), "{stats}");
            Ok(Outcome::Done)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "storekit",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Done)
        }
    }
}

async fn connect(url: &str) -> storekit::Result<Stores> {
    storekit::connect(url).await
}

async fn migrate(url: &str) -> storekit::Result<Outcome> {
    let stores = connect(url).await?;
    let report = stores.migrate_report().await?;
    for object in &report.created {
        say(&format!("created  {object}"));
    }
    for object in &report.present {
        say(&format!("present  {object}"));
    }
    say(&format!(
        "{}: {} created, {} already there",
        stores.backend(),
        report.created.len(),
        report.present.len()
    ));
    Ok(Outcome::Done)
}

async fn check(url: &str) -> storekit::Result<Outcome> {
    let stores = connect(url).await?;
    let differences = stores.schema_differences().await?;
    for difference in &differences {
        say(&difference.to_string());
    }
    // Another client's indexes: listed, never a difference.
    for index in stores.undeclared_indexes().await? {
        say(&format!("left alone: {index}"));
    }
    if differences.is_empty() {
        say(&format!("{}: the schema is as expected", stores.backend()));
        Ok(Outcome::Done)
    } else {
        say(&format!("{} differences", differences.len()));
        Ok(Outcome::Unequal)
    }
}

fn export_schema(args: &ExportArgs) -> storekit::Result<Outcome> {
    let target: Target = args.backend.parse()?;
    let format: Format = match &args.format {
        Some(format) => format.parse()?,
        None if target == Target::DynamoDb => Format::Terraform,
        None => Format::Sql,
    };
    let options = ExportOptions::default()
        .prefix(args.prefix.clone())
        .id_kind(IdKind::parse(&args.id)?);
    let rendered = storekit::schema::render(target, format, &options, &[])?;
    let _ = write!(std::io::stdout().lock(), "{rendered}");
    Ok(Outcome::Done)
}

/// `schema --from URL`: the live store's definitions, in `format` (the backend's default
/// when not given).
async fn export_live(url: &str, format: Option<&str>) -> storekit::Result<Outcome> {
    let format = format.map(str::parse::<Format>).transpose()?;
    let rendered = storekit::schema::render_from(url, format).await?;
    let _ = write!(std::io::stdout().lock(), "{rendered}");
    Ok(Outcome::Done)
}

async fn copy(args: &CopyArgs) -> storekit::Result<Outcome> {
    let (from, to) = (connect(&args.from).await?, connect(&args.to).await?);
    to.migrate().await?;
    let options = CopyOptions {
        only: args.only,
        namespace: args.namespace.clone(),
        batch: args.batch,
        parallel: args.parallel,
        verify: !args.no_verify,
        segments: args.segments,
    };
    if args.only.is_none_or(|kind| kind == Kind::Tables) {
        note(&storekit::stats::plan(&from).await?.to_string());
    }
    let started = Instant::now();
    let summary = if args.quiet || !std::io::stderr().is_terminal() {
        storekit::copy::copy(&from, &to, &options, &NoProgress).await?
    } else {
        storekit::copy::copy(&from, &to, &options, &Bars::default()).await?
    };
    report(&summary, started.elapsed(), args.bench);
    Ok(if summary.is_complete() {
        Outcome::Done
    } else {
        Outcome::Unequal
    })
}

fn report(summary: &CopySummary, took: Duration, bench: bool) {
    say(&format!(
        "users: {} created, {} updated, {} unchanged",
        summary.users_created, summary.users_updated, summary.users_unchanged
    ));
    say(&format!("kv items: {}", summary.kv_items));
    for (table, records) in &summary.records {
        say(&format!("table {table}: {records} records"));
    }
    for conflict in &summary.conflicts {
        say(&format!("conflict: {conflict}"));
    }
    for mismatch in &summary.mismatches {
        say(&format!("count differs: {mismatch}"));
    }
    if bench {
        let items = summary.kv_items
            + summary.users_created
            + summary.users_updated
            + summary.records.values().sum::<u64>();
        say(&format!(
            "rate: {items} items in {:.2} s, {:.0} items/s",
            took.as_secs_f64(),
            items as f64 / took.as_secs_f64().max(1e-9)
        ));
    }
}

/// A progress bar per stage on stderr: a bar when the total is known, a counter with its
/// rate when not.
#[derive(Default)]
struct Bars {
    current: std::sync::Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg:>20} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:>20} {spinner} {pos} {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar() = Some(bar);
    }

    fn advance(&self, done: u64) {
        if let Some(bar) = self.bar().as_ref() {
            bar.inc(done);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar().take() {
            bar.finish();
        }
    }
}

impl Bars {
    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
