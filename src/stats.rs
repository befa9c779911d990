//! Counting what a store holds: what `storekit stats` prints and what `storekit copy`
//! compares at the end.

use std::collections::BTreeMap;
use std::fmt;

use storekit_core::futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit_core::table::TableSize;
use storekit_core::transfer::{KvPosition, MAX_IMPORT_BATCH};
use storekit_core::{Error, PageRequest, Result};

use crate::Stores;

/// One kind of thing a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Users with their OAuth accounts and access tokens.
    Users,
    /// Key-value items.
    Kv,
    /// Records of the tables store.
    Tables,
}

impl Kind {
    /// Every kind, in the order `copy` copies them.
    pub const ALL: [Kind; 3] = [Kind::Users, Kind::Kv, Kind::Tables];

    /// Its name on the command line: `users`, `kv` or `tables`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Kv => "kv",
            Kind::Tables => "tables",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                Error::invalid("kind", format!("{name:?}: expected users, kv or tables"))
            })
    }
}

/// What [`stats`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this kind; every kind when `None`.
    pub only: Option<Kind>,
    /// Only the kv items of this namespace.
    pub namespace: Option<String>,
}

/// How much a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Users.
    pub users: u64,
    /// OAuth accounts, over all users.
    pub oauth_accounts: u64,
    /// Access tokens, over all users.
    pub access_tokens: u64,
    /// Live kv items per namespace.
    pub kv: BTreeMap<String, u64>,
    /// Records per table.
    pub tables: BTreeMap<String, u64>,
}

impl Stats {
    /// Every count of `self` that `other` does not match, as (what, (ours, theirs)):
    /// namespaces and tables `other` lacks count as 0 there; those only `other` has are not
    /// compared.
    #[must_use]
    pub fn compare(&self, other: &Stats) -> Vec<(String, (u64, u64))> {
        let mut differ = Vec::new();
        let mut check = |what: String, ours: u64, theirs: u64| {
            if ours != theirs {
                differ.push((what, (ours, theirs)));
            }
        };
        check("users".into(), self.users, other.users);
        check(
            "oauth accounts".into(),
            self.oauth_accounts,
            other.oauth_accounts,
        );
        check(
            "access tokens".into(),
            self.access_tokens,
            other.access_tokens,
        );
        for (namespace, &count) in &self.kv {
            let theirs = other.kv.get(namespace).copied().unwrap_or(0);
            check(format!("kv namespace {namespace:?}"), count, theirs);
        }
        for (table, &count) in &self.tables {
            let theirs = other.tables.get(table).copied().unwrap_or(0);
            check(format!("table {table:?}"), count, theirs);
        }
        differ
    }

    /// Live kv items over every namespace.
    #[must_use]
    pub fn kv_items(&self) -> u64 {
        self.kv.values().sum()
    }

    /// Records over every table.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.tables.values().sum()
    }
}

impl fmt::Display for Stats {
    /// One line per kind, then one per namespace and per table, indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users           {}", self.users)?;
        writeln!(f, "oauth accounts  {}", self.oauth_accounts)?;
        writeln!(f, "access tokens   {}", self.access_tokens)?;
        writeln!(
            f,
            "kv items        {} in {} namespaces",
            self.kv_items(),
            self.kv.len()
        )?;
        for (namespace, count) in &self.kv {
            writeln!(f, "  {namespace:<30} {count}")?;
        }
        writeln!(
            f,
            "records         {} in {} tables",
            self.records(),
            self.tables.len()
        )?;
        for (table, count) in &self.tables {
            writeln!(f, "  {table:<30} {count}")?;
        }
        Ok(())
    }
}

/// What a full read of one table will read, as the database knows without reading it
/// ([`TableStore::table_size`](storekit_core::table::TableStore::table_size)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    /// The table's name.
    pub table: String,
    /// Its size, as the database says.
    pub size: TableSize,
    /// About how many read requests one full read takes: one per 1 MB page on DynamoDB
    /// (`None` when the size is unknown), one statement on SQL and memory.
    pub requests: Option<u64>,
    /// About how many read units one consistent full read bills on DynamoDB (4 KB each; an
    /// eventual read bills half); `None` elsewhere, or when the size is unknown.
    pub read_units: Option<u64>,
}

/// What [`stats`] (or [`crate::copy::copy`]) will read: each table's size and the requests
/// and read units one full read of it costs, known before reading anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// The tables of the store's catalog, in its order.
    pub tables: Vec<TableRead>,
}

impl fmt::Display for ReadPlan {
    /// One line per table: `products: about 332 records, 0.1 MB; a full read is about 1
    /// request and 25 read units`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for table in &self.tables {
            let about = if table.size.exact { "" } else { "about " };
            write!(f, "{}: ", table.table)?;
            match table.size.records {
                Some(records) => write!(f, "{about}{records} records")?,
                None => write!(f, "records unknown until counted")?,
            }
            if let Some(bytes) = table.size.bytes {
                #[allow(clippy::cast_precision_loss)] // a size for people to read
                let mb = bytes as f64 / 1e6;
                write!(f, ", {mb:.1} MB")?;
            }
            match (table.requests, table.read_units) {
                (Some(requests), Some(units)) => writeln!(
                    f,
                    "; a full read is about {requests} requests and {units} read units \
                     (consistent; half if eventual)"
                )?,
                (Some(requests), None) => {
                    writeln!(f, "; a full read is {requests} statement(s)")?;
                }
                _ => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// What reading every table of `stores` in full will read (see [`ReadPlan`]): one
/// `DescribeTable` per table on DynamoDB, nothing read from the tables themselves.
pub async fn plan(stores: &Stores) -> Result<ReadPlan> {
    let tables = stores.tables();
    let dynamodb = stores.backend() == "dynamodb";
    let mut plan = ReadPlan::default();
    for schema in stores.transfer().tables().await? {
        let size = tables.table_size(&schema).await?;
        let (requests, read_units) = if dynamodb {
            const PAGE: u64 = 1 << 20;
            const UNIT: u64 = 4 << 10;
            (
                size.bytes.map(|b| b.div_ceil(PAGE).max(1)),
                size.bytes.map(|b| b.div_ceil(UNIT).max(1)),
            )
        } else {
            (Some(1), None)
        };
        plan.tables.push(TableRead {
            table: schema.name().to_owned(),
            size,
            requests,
            read_units,
        });
    }
    Ok(plan)
}

/// Counts what `stores` holds within `scope`. Reads every user (with its accounts and tokens)
/// and every live kv item, and asks each table for its count, which reads the whole table
/// ([`TableStore::count`](storekit_core::table::TableStore::count): on DynamoDB a
/// `Select=COUNT` Scan, as many read units as reading every record; [`plan`] says how many
/// before).
pub async fn stats(stores: &Stores, scope: &Scope) -> Result<Stats> {
    let includes = |kind| scope.only.is_none_or(|only| only == kind);
    let mut stats = Stats::default();
    if includes(Kind::Users) {
        count_users(stores, &mut stats).await?;
    }
    if includes(Kind::Kv) {
        stats.kv = count_kv(stores, scope.namespace.as_deref()).await?;
    }
    if includes(Kind::Tables) {
        let tables = stores.tables();
        for schema in stores.transfer().tables().await? {
            let count = tables.count(&schema).await?;
            stats.tables.insert(schema.name().to_owned(), count);
        }
    }
    Ok(stats)
}

async fn count_users(stores: &Stores, stats: &mut Stats) -> Result<()> {
    let (auth, transfer) = (stores.auth(), stores.transfer());
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let users = auth.list_users(page.clone()).await?;
        stats.users += users.items.len() as u64;
        let bundles: Vec<_> = stream::iter(&users.items)
            .map(|user| transfer.export_user(user.id))
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for bundle in bundles.into_iter().flatten() {
            stats.oauth_accounts += bundle.oauth_accounts.len() as u64;
            stats.access_tokens += bundle.access_tokens.len() as u64;
        }
        match users.next {
            Some(next) => page = PageRequest::after(page.limit, next),
            None => return Ok(()),
        }
    }
}

async fn count_kv(stores: &Stores, namespace: Option<&str>) -> Result<BTreeMap<String, u64>> {
    let transfer = stores.transfer();
    let mut counts = BTreeMap::new();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = transfer
            .export_kv(namespace, after.as_ref(), MAX_IMPORT_BATCH)
            .await?;
        for entry in &page {
            *counts.entry(entry.namespace.clone()).or_insert(0) += 1;
        }
        match page.last() {
            Some(last) if page.len() == MAX_IMPORT_BATCH => after = Some(last.position()),
            _ => return Ok(counts),
        }
    }
}
