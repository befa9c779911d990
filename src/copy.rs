//! Copying everything from one backend to another: what `storekit copy` runs, as a library
//! call.
//!
//! [`copy`] streams every live kv item (with its deadline, so its remaining TTL carries over),
//! every user (with its id, version, OAuth accounts and token hashes) and every table record
//! (with its version) in batches, reading the next batch while the last ones are written. Each
//! write is an upsert keyed by what identifies the thing, so a copy that stops half-way and
//! runs again neither loses nor duplicates anything, and a user already equal in the
//! destination is not written at all. A destination user that holds the same email (or OAuth
//! account) under another id is never overwritten: it is reported in
//! [`CopySummary::conflicts`]. At the end the counts of both sides are compared
//! ([`CopySummary::mismatches`]).
//!
//! The source is read once: what the copy read of it (users with their accounts and tokens,
//! live kv items per namespace, records per table) is its side of the comparison, and only
//! the destination is counted again. Before each table the copy says what reading it will
//! cost ([`crate::stats::plan`]: the database's own figures, no read), which is the total of
//! its progress bar. Tables are read in parallel scan segments ([`CopyOptions::segments`]).

use std::collections::BTreeMap;

use storekit_core::futures::stream::TryChunksError;
use storekit_core::futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit_core::table::{Scan, TableSchema, scan_stream_parallel};
use storekit_core::transfer::{Imported, KvPosition, MAX_IMPORT_BATCH};
use storekit_core::{Error, PageRequest, Result, UserId};

use crate::Stores;
pub use crate::stats::Kind;
use crate::stats::{self, Stats};

/// What [`copy`] copies and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Only this kind; every kind when `None`.
    pub only: Option<Kind>,
    /// Only the kv items of this namespace (users and tables are not namespaced).
    pub namespace: Option<String>,
    /// Items or records per read and per write (1 to 1,000; default 500).
    pub batch: usize,
    /// Writes in flight at once (default 4).
    pub parallel: usize,
    /// Whether to compare the counts of both sides at the end (default true).
    pub verify: bool,
    /// How many segments of each table are scanned at once ([`Scan::segment`]); `None` (the
    /// default) is 4 from DynamoDB, where a parallel scan reads several partitions at once,
    /// and 1 elsewhere, where each segment would read the whole table again.
    pub segments: Option<u32>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            only: None,
            namespace: None,
            batch: 500,
            parallel: 4,
            verify: true,
            segments: None,
        }
    }
}

impl CopyOptions {
    fn includes(&self, kind: Kind) -> bool {
        self.only.is_none_or(|only| only == kind)
    }

    fn check(&self) -> Result<()> {
        if !(1..=MAX_IMPORT_BATCH).contains(&self.batch) {
            return Err(Error::invalid(
                "batch",
                format!("{}: must be 1 to {MAX_IMPORT_BATCH}", self.batch),
            ));
        }
        if self.parallel == 0 {
            return Err(Error::invalid("parallel", "must be at least 1"));
        }
        if let Some(segments) = self.segments
            && !(1..=storekit_core::table::MAX_SEGMENTS).contains(&segments)
        {
            return Err(Error::invalid(
                "segments",
                format!(
                    "{segments}: must be 1 to {}",
                    storekit_core::table::MAX_SEGMENTS
                ),
            ));
        }
        Ok(())
    }
}

/// Where a long copy reports how far it got (a progress bar in the `storekit` command).
pub trait Progress: Send + Sync {
    /// A stage starts: copying `what` (`users`, `kv`, `table products`), `total` items if
    /// known.
    fn begin(&self, what: &str, total: Option<u64>) {
        let _ = (what, total);
    }

    /// `done` more items of the current stage were written.
    fn advance(&self, done: u64) {
        let _ = done;
    }

    /// The current stage is over.
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// What [`copy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Kv items written.
    pub kv_items: u64,
    /// Users the destination did not have.
    pub users_created: u64,
    /// Users the destination had with other fields, accounts or tokens, now equal.
    pub users_updated: u64,
    /// Users the destination already had equal; not written.
    pub users_unchanged: u64,
    /// Records written, per table.
    pub records: BTreeMap<String, u64>,
    /// Users not copied because the destination holds their email or an OAuth account under
    /// another id, one line each.
    pub conflicts: Vec<String>,
    /// Counts that differ between source and destination after the copy, one line each
    /// (empty when verified, or when verification was off).
    pub mismatches: Vec<String>,
}

impl CopySummary {
    /// Whether everything was copied and the counts agree.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.conflicts.is_empty() && self.mismatches.is_empty()
    }
}

/// Copies what `options` selects from `from` to `to`, creating missing tables in `to` with
/// the schemas `from`'s catalog records. The destination should be migrated first.
///
/// Safe to run again after an interruption or a full run: nothing is lost or duplicated.
pub async fn copy(
    from: &Stores,
    to: &Stores,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopySummary> {
    options.check()?;
    let (source, destination) = (from.transfer(), to.transfer());
    if options.includes(Kind::Users) && source.id_kind() != destination.id_kind() {
        return Err(Error::invalid(
            "id kind",
            format!(
                "the source's user ids are {} and the destination's {}: copy between stores of one \
                 id kind (the URL's id= parameter)",
                source.id_kind().as_str(),
                destination.id_kind().as_str()
            ),
        ));
    }
    let mut summary = CopySummary::default();
    // What the copy read of the source: its side of the final comparison, so the source is
    // read once.
    let mut read = Stats::default();
    if options.includes(Kind::Users) {
        copy_users(from, to, options, progress, &mut summary, &mut read).await?;
    }
    if options.includes(Kind::Kv) {
        let (written, per_namespace) = copy_kv(from, to, options, progress).await?;
        summary.kv_items = written;
        read.kv = per_namespace;
    }
    if options.includes(Kind::Tables) {
        let segments = options
            .segments
            .unwrap_or(if from.backend() == "dynamodb" { 4 } else { 1 });
        let plan = stats::plan(from).await?;
        for schema in source.tables().await? {
            let size = plan
                .tables
                .iter()
                .find(|t| t.table == schema.name())
                .and_then(|t| t.size.records);
            let copied = copy_table(from, to, &schema, options, segments, size, progress).await?;
            summary.records.insert(schema.name().to_owned(), copied);
            read.tables.insert(schema.name().to_owned(), copied);
        }
    }
    if options.verify {
        let scope = stats::Scope {
            only: options.only,
            namespace: options.namespace.clone(),
        };
        let after = stats::stats(to, &scope).await?;
        summary.mismatches = mismatches(&read, &after);
    }
    Ok(summary)
}

/// Every page of live kv items; returns how many were written, and how many were read per
/// namespace.
async fn copy_kv(
    from: &Stores,
    to: &Stores,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<(u64, BTreeMap<String, u64>)> {
    let (source, destination) = (from.transfer(), to.transfer());
    progress.begin("kv", None);
    let (namespace, batch) = (options.namespace.as_deref(), options.batch);
    // The state is where the next page starts; `None` once a short page said it was the last.
    let pages = stream::try_unfold(Some(None::<KvPosition>), |after| {
        let source = source.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = source.export_kv(namespace, after.as_ref(), batch).await?;
            let next = (page.len() == batch)
                .then(|| page.last().map(|entry| Some(entry.position())))
                .flatten();
            Ok(Some((page, next)))
        }
    });
    let mut counts = BTreeMap::new();
    let pages = pages.inspect_ok(|page: &Vec<storekit_core::transfer::KvEntry>| {
        for entry in page {
            *counts.entry(entry.namespace.clone()).or_insert(0) += 1;
        }
    });
    let written = write_pages(pages, options.parallel, progress, |page| {
        let destination = destination.clone();
        async move { Ok(destination.import_kv(&page).await? as u64) }
    })
    .await?;
    progress.end();
    Ok((written, counts))
}

/// Writes each page with `write` as it is read, up to `parallel` writes in flight while the
/// next page is read, and adds up what the writes report.
async fn write_pages<T, W, F>(
    pages: impl stream::Stream<Item = Result<Vec<T>>>,
    parallel: usize,
    progress: &dyn Progress,
    write: W,
) -> Result<u64>
where
    W: FnMut(Vec<T>) -> F,
    F: Future<Output = Result<u64>>,
{
    pages
        .try_filter(|page| std::future::ready(!page.is_empty()))
        .map_ok(write)
        .try_buffer_unordered(parallel)
        .try_fold(0_u64, |written, n| async move {
            progress.advance(n);
            Ok(written + n)
        })
        .await
}

/// What became of one user, with its (OAuth accounts, access tokens) as read.
enum UserOutcome {
    Imported(Imported, (u64, u64)),
    /// Not copied: the destination holds its email or an OAuth account under another id.
    Conflict(String, (u64, u64)),
    /// Deleted from the source while the copy ran.
    Gone,
}

/// Every user, page after page of ids, each exported and imported whole.
async fn copy_users(
    from: &Stores,
    to: &Stores,
    options: &CopyOptions,
    progress: &dyn Progress,
    summary: &mut CopySummary,
    read: &mut Stats,
) -> Result<()> {
    let (auth, source, destination) = (from.auth(), from.transfer(), to.transfer());
    progress.begin("users", None);
    let mut page = PageRequest::first(options.batch.min(PageRequest::MAX_LIMIT));
    loop {
        let users = auth.list_users(page.clone()).await?;
        let ids: Vec<UserId> = users.items.iter().map(|user| user.id).collect();
        let outcomes: Vec<Result<UserOutcome>> = stream::iter(ids)
            .map(|id| {
                let (source, destination) = (source.clone(), destination.clone());
                async move {
                    // A user deleted since it was listed has nothing left to copy.
                    let Some(bundle) = source.export_user(id).await? else {
                        return Ok(UserOutcome::Gone);
                    };
                    let held = (
                        bundle.oauth_accounts.len() as u64,
                        bundle.access_tokens.len() as u64,
                    );
                    match destination.import_user(&bundle).await {
                        Ok(imported) => Ok(UserOutcome::Imported(imported, held)),
                        Err(Error::AlreadyExists { what }) => Ok(UserOutcome::Conflict(
                            format!(
                                "user {id} ({}): the destination holds its {what} under \
                                 another id",
                                bundle.user.email
                            ),
                            held,
                        )),
                        Err(err) => Err(err),
                    }
                }
            })
            .buffer_unordered(options.parallel)
            .collect()
            .await;
        for outcome in outcomes {
            let held = match outcome? {
                UserOutcome::Imported(imported, held) => {
                    match imported {
                        Imported::Created => summary.users_created += 1,
                        Imported::Updated => summary.users_updated += 1,
                        Imported::Unchanged => summary.users_unchanged += 1,
                    }
                    held
                }
                UserOutcome::Conflict(line, held) => {
                    summary.conflicts.push(line);
                    held
                }
                UserOutcome::Gone => continue,
            };
            read.users += 1;
            read.oauth_accounts += held.0;
            read.access_tokens += held.1;
        }
        progress.advance(users.items.len() as u64);
        match users.next {
            Some(next) => page = PageRequest::after(page.limit, next),
            None => break,
        }
    }
    progress.end();
    Ok(())
}

/// Every record of one table, into the same table (created if missing) in the destination,
/// read in `segments` parallel scan segments; `size` (the database's estimate, if any) is
/// the progress bar's total: nothing is counted before.
async fn copy_table(
    from: &Stores,
    to: &Stores,
    schema: &TableSchema,
    options: &CopyOptions,
    segments: u32,
    size: Option<u64>,
    progress: &dyn Progress,
) -> Result<u64> {
    let (tables, destination) = (from.tables(), to.transfer());
    to.tables().ensure_table(schema).await?;
    progress.begin(&format!("table {}", schema.name()), size);
    let batch = options.batch;
    let scan = Scan::new().limit(batch);
    let pages = scan_stream_parallel(tables, schema.clone(), scan, segments)
        .try_chunks(batch)
        .map_err(|TryChunksError(_, err)| err);
    let written = write_pages(pages, options.parallel, progress, |records| {
        let destination = destination.clone();
        async move {
            destination.import_records(schema, &records).await?;
            Ok(records.len() as u64)
        }
    })
    .await?;
    progress.end();
    Ok(written)
}

/// One line per count that differs between the two sides.
fn mismatches(source: &Stats, destination: &Stats) -> Vec<String> {
    let mut lines = Vec::new();
    for (what, (a, b)) in source.compare(destination) {
        lines.push(format!("{what}: source {a}, destination {b}"));
    }
    lines
}
