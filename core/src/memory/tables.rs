//! The tables store in memory: the reference the other backends are compared with, with
//! optional index lag to stand in for DynamoDB's eventual indexes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::MutexGuard;
use std::time::Instant;

use async_trait::async_trait;

use super::MemoryStore;
use crate::backend::TableBackend;
use crate::table::transact::{Resolved, Step, failed};
use crate::table::{
    Condition, Consistency, Document, Fetched, IndexQuery, KeyValue, MissingIndexes, Order, Patch,
    Position, Record, RecordKey, Returning, Row, TableScan, TableSchema, TableShape,
};
use crate::transfer::TableTransferBackend;
use crate::{Error, Result};

#[derive(Default)]
pub(super) struct Tables {
    tables: HashMap<String, Table>,
}

#[derive(Clone)]
struct Table {
    shape: TableShape,
    rows: BTreeMap<RecordKey, Stored>,
    /// Per unique index name: who holds each value.
    uniques: HashMap<String, HashMap<Vec<KeyValue>, RecordKey>>,
    /// What query indexes see when they lag: the rows as of `lag` ago.
    indexed: BTreeMap<RecordKey, Stored>,
    /// Writes on their way to `indexed`, oldest first.
    pending: VecDeque<(Instant, RecordKey, Option<Stored>)>,
}

#[derive(Clone)]
struct Stored {
    version: u64,
    document: Document,
    /// The record's values in each unique index, by index name.
    uniques: Vec<(String, Vec<KeyValue>)>,
}

impl Stored {
    fn record(&self, key: &RecordKey) -> Record {
        Record {
            key: key.clone(),
            version: self.version,
            document: self.document.clone(),
        }
    }
}

fn no_table() -> Error {
    Error::NotFound { what: "table" }
}

impl MemoryStore {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // As with the other maps: a panic under the lock leaves nothing worse than a lost
        // write, so a poisoned lock is reused.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_table<T>(
        &self,
        schema: &TableSchema,
        f: impl FnOnce(&mut Table) -> Result<T>,
    ) -> Result<T> {
        let mut tables = self.tables();
        let table = tables.tables.get_mut(schema.name()).ok_or_else(no_table)?;
        f(table)
    }

    fn write(&self, schema: &TableSchema, row: &Row, expected: Expect) -> Result<u64> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| table.write(schema, row, expected, lag))
    }

    /// Applies a checked patch under the table's lock: read, check, change and write as one.
    fn patch_record(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            let current = table
                .rows
                .get(key)
                .ok_or(Error::NotFound { what: "record" })?
                .record(key);
            let row = crate::table::patch::patch_row(schema, &current, patch, condition)?;
            let version = table.write(schema, &row, Expect::Version(current.version), lag)?;
            Ok((
                version,
                crate::table::patch::returned(
                    patch,
                    returning,
                    Some(&current.document),
                    row.document(),
                ),
            ))
        })
    }
}

impl Table {
    fn write(
        &mut self,
        schema: &TableSchema,
        row: &Row,
        expected: Expect,
        lag: bool,
    ) -> Result<u64> {
        let table = self;
        table.purge_expired(schema, row, lag);
        {
            let current = table.rows.get(row.key()).map(|s| s.version);
            let version = match (expected, current) {
                (Expect::Absent, Some(_)) => return Err(Error::AlreadyExists { what: "record" }),
                (Expect::Version(_), None) => return Err(Error::NotFound { what: "record" }),
                (Expect::Version(expected), Some(actual)) if expected != actual => {
                    return Err(Error::Conflict {
                        what: "record",
                        expected,
                        actual,
                    });
                }
                (Expect::At(version), _) => version,
                (_, current) => crate::table::next_version(current.unwrap_or(0))?,
            };
            let uniques: Vec<(String, Vec<KeyValue>)> = schema
                .uniques()
                .iter()
                .zip(row.uniques())
                .filter_map(|(index, values)| Some((index.name().to_owned(), values.clone()?)))
                .collect();
            for (index, values) in &uniques {
                let holder = table.uniques.get(index).and_then(|held| held.get(values));
                if holder.is_some_and(|holder| holder != row.key()) {
                    return Err(Error::AlreadyExists {
                        what: "unique value",
                    });
                }
            }
            table.release(row.key());
            for (index, values) in &uniques {
                table
                    .uniques
                    .entry(index.clone())
                    .or_default()
                    .insert(values.clone(), row.key().clone());
            }
            let stored = Stored {
                version,
                document: row.document().clone(),
                uniques,
            };
            if lag {
                table
                    .pending
                    .push_back((Instant::now(), row.key().clone(), Some(stored.clone())));
            }
            table.rows.insert(row.key().clone(), stored);
            Ok(version)
        }
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Absent,
    Any,
    Version(u64),
    /// Written at this version whatever is there: a record copied from another store.
    At(u64),
}

impl Table {
    /// Deletes the expired records in a write's way: the one at its key and those holding its
    /// unique values, so that the write sees them as absent (reads skip them in the layer).
    fn purge_expired(&mut self, schema: &TableSchema, row: &Row, lag: bool) {
        if schema.ttl().is_none() {
            return;
        }
        let now = crate::time::now_seconds();
        let mut doomed = vec![row.key().clone()];
        for (index, values) in schema.uniques().iter().zip(row.uniques()) {
            if let Some(values) = values
                && let Some(holder) = self.uniques.get(index.name()).and_then(|h| h.get(values))
            {
                doomed.push(holder.clone());
            }
        }
        for key in doomed {
            if self
                .rows
                .get(&key)
                .is_some_and(|stored| schema.is_expired(&stored.document, now))
            {
                self.release(&key);
                self.rows.remove(&key);
                if lag {
                    self.pending.push_back((Instant::now(), key, None));
                }
            }
        }
    }

    /// Frees the unique values `key` holds.
    fn release(&mut self, key: &RecordKey) {
        if let Some(old) = self.rows.get(key) {
            for (index, values) in &old.uniques {
                if let Some(held) = self.uniques.get_mut(index) {
                    held.remove(values);
                }
            }
        }
    }

    /// The rows a read at `consistency` sees: the latest, or, for an eventual read on a store
    /// that simulates lag, what the indexes see.
    fn rows_at(
        &mut self,
        consistency: Consistency,
        lag: std::time::Duration,
    ) -> &BTreeMap<RecordKey, Stored> {
        match consistency {
            Consistency::Eventual => self.indexed(lag),
            Consistency::ReadAfterWrite => &self.rows,
        }
    }

    /// The rows query indexes see now.
    fn indexed(&mut self, lag: std::time::Duration) -> &BTreeMap<RecordKey, Stored> {
        if lag.is_zero() {
            return &self.rows;
        }
        while let Some((at, _, _)) = self.pending.front()
            && at.elapsed() >= lag
        {
            if let Some((_, key, stored)) = self.pending.pop_front() {
                match stored {
                    Some(stored) => self.indexed.insert(key, stored),
                    None => self.indexed.remove(&key),
                };
            }
        }
        &self.indexed
    }
}

/// Reads `records` in order, as a database reads a key range: keeps up to `fetch` that meet
/// `filter`, and stops there, at the end, or when `budget` records have been read (then
/// leaving where it stopped as the cut, if any record follows). Every record is counted as
/// read, met or not: the reference for what [`Fetched::read`] counts.
fn read_range(
    schema: &TableSchema,
    records: impl Iterator<Item = Record>,
    fetch: usize,
    filter: Option<&Condition>,
    budget: Option<u64>,
) -> Fetched {
    let bytes_fields = crate::table::expr::bytes_fields(schema);
    let mut fetched = Fetched {
        read_through: Some(Vec::new()),
        ..Fetched::default()
    };
    let mut records = records.peekable();
    while fetched.records.len() < fetch {
        let Some(record) = records.next() else { break };
        fetched.read += 1;
        let at_budget = budget == Some(fetched.read);
        let cut = (at_budget && records.peek().is_some()).then(|| record.document.clone());
        if filter.is_none_or(|filter| filter.matches(&record.document, &bytes_fields)) {
            fetched.records.push(record);
            if let Some(through) = &mut fetched.read_through {
                through.push(fetched.read);
            }
        }
        if at_budget {
            if fetched.records.len() < fetch {
                fetched.cut = cut;
            }
            break;
        }
    }
    fetched
}

/// Copying tables out and in (see [`crate::transfer`]).
#[async_trait]
impl TableTransferBackend for MemoryStore {
    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>> {
        let tables = self.tables();
        let mut shapes: Vec<_> = tables
            .tables
            .iter()
            .map(|(name, table)| (name.clone(), table.shape.clone()))
            .collect();
        shapes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(shapes)
    }

    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()> {
        for (row, version) in rows {
            self.write(schema, row, Expect::At(*version))?;
        }
        Ok(())
    }
}

#[async_trait]
impl TableBackend for MemoryStore {
    fn index_consistency(&self) -> Consistency {
        if self.index_lag.is_zero() {
            Consistency::ReadAfterWrite
        } else {
            Consistency::Eventual
        }
    }

    fn eventual_reads(&self) -> Consistency {
        // Eventual reads lag as the indexes do, so that code assuming otherwise fails here.
        self.index_consistency()
    }

    async fn get_at(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: Option<&crate::table::Projection>,
        consistency: Consistency,
    ) -> Result<Option<Record>> {
        let lag = self.index_lag;
        let found = self.with_table(schema, |table| {
            Ok(table
                .rows_at(consistency, lag)
                .get(key)
                .map(|s| s.record(key)))
        })?;
        Ok(match fetch {
            Some(fetch) => found.map(|record| fetch.project_record(record)),
            None => found,
        })
    }

    async fn get_many_at(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: Option<&crate::table::Projection>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Record>>> {
        let lag = self.index_lag;
        let found: Vec<Option<Record>> = self.with_table(schema, |table| {
            let rows = table.rows_at(consistency, lag);
            Ok(keys
                .iter()
                .map(|key| rows.get(key).map(|s| s.record(key)))
                .collect())
        })?;
        Ok(match fetch {
            Some(fetch) => found
                .into_iter()
                .map(|found| found.map(|record| fetch.project_record(record)))
                .collect(),
            None => found,
        })
    }

    async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        Ok(self
            .tables()
            .tables
            .get(schema.name())
            .map(|t| t.shape.clone()))
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        Ok(self.tables().tables.keys().cloned().collect())
    }

    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        self.tables()
            .tables
            .entry(schema.name().to_owned())
            .or_insert_with(|| Table {
                shape: schema.shape(),
                rows: BTreeMap::new(),
                uniques: HashMap::new(),
                indexed: BTreeMap::new(),
                pending: VecDeque::new(),
            });
        Ok(())
    }

    async fn add_indexes(&self, schema: &TableSchema, missing: &MissingIndexes) -> Result<()> {
        self.with_table(schema, |table| {
            let declared = schema.shape();
            // Fill the new unique indexes first, so a duplicate leaves the table as it was.
            let mut filled = Vec::new();
            for &u in &missing.uniques {
                let index = &schema.uniques()[u];
                let mut held: HashMap<Vec<KeyValue>, RecordKey> = HashMap::new();
                let mut entries = Vec::new();
                for (key, stored) in &table.rows {
                    let values = index
                        .components()
                        .iter()
                        .map(|c| c.read(&stored.document))
                        .collect::<Result<Option<Vec<_>>>>()?;
                    if let Some(values) = values {
                        if held.insert(values.clone(), key.clone()).is_some() {
                            return Err(Error::AlreadyExists {
                                what: "unique value",
                            });
                        }
                        entries.push((key.clone(), values));
                    }
                }
                filled.push((index.name().to_owned(), held, entries));
            }
            for (name, held, entries) in filled {
                for (key, values) in entries {
                    if let Some(stored) = table.rows.get_mut(&key) {
                        stored.uniques.push((name.clone(), values));
                    }
                }
                table.uniques.insert(name, held);
            }
            for &i in &missing.indexes {
                table.shape.indexes.push(declared.indexes[i].clone());
            }
            for &u in &missing.uniques {
                table.shape.uniques.push(declared.uniques[u].clone());
            }
            Ok(())
        })
    }

    async fn forget_indexes(&self, schema: &TableSchema, undeclared: &[String]) -> Result<()> {
        // Index entries are computed from the schema at each query, so nothing else holds
        // them; forgotten as SQL forgets them, so both answer alike.
        self.with_table(schema, |table| {
            table
                .shape
                .indexes
                .retain(|index| !undeclared.contains(&index.name));
            Ok(())
        })
    }

    async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
        Ok(self.tables().tables.remove(schema.name()).is_some())
    }

    async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()> {
        self.write(schema, row, Expect::Absent).map(drop)
    }

    async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64> {
        self.write(schema, row, Expect::Any)
    }

    async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()> {
        self.write(schema, row, Expect::Version(expected)).map(drop)
    }

    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            match (table.rows.get(key).map(|s| s.version), expected) {
                (None, None) => return Ok(false),
                (None, Some(_)) => return Err(Error::NotFound { what: "record" }),
                (Some(actual), Some(expected)) if actual != expected => {
                    return Err(Error::Conflict {
                        what: "record",
                        expected,
                        actual,
                    });
                }
                _ => {}
            }
            table.release(key);
            table.rows.remove(key);
            if lag {
                table.pending.push_back((Instant::now(), key.clone(), None));
            }
            Ok(true)
        })
    }

    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
        self.with_table(schema, |table| {
            Ok(table.rows.get(key).map(|s| s.record(key)))
        })
    }

    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        self.with_table(schema, |table| {
            Ok(keys
                .iter()
                .map(|key| table.rows.get(key).map(|s| s.record(key)))
                .collect())
        })
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        self.with_table(schema, |table| Ok(table.rows.contains_key(key)))
    }

    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        let name = schema.uniques()[index].name();
        self.with_table(schema, |table| {
            let key = table.uniques.get(name).and_then(|held| held.get(values));
            Ok(key.and_then(|key| table.rows.get(key).map(|s| s.record(key))))
        })
    }

    async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Fetched> {
        let lag = self.index_lag;
        self.with_table(schema, |table| {
            let mut hits: Vec<(Position, Record)> = Vec::new();
            match query.index {
                None => {
                    let start = RecordKey {
                        partition: query.partition.clone(),
                        sort: None,
                    };
                    for (key, stored) in table.rows_at(query.consistency, lag).range(start..) {
                        if key.partition != *query.partition {
                            break;
                        }
                        let sort_ok = match (query.sort, &key.sort) {
                            (Some(condition), Some(sort)) => condition.matches(sort),
                            _ => true,
                        };
                        let position = Position {
                            sort: None,
                            key: key.clone(),
                        };
                        if sort_ok && query.is_after(&position) {
                            hits.push((position, stored.record(key)));
                        }
                    }
                }
                Some(i) => {
                    let index = &schema.indexes()[i];
                    for (key, stored) in table.indexed(lag) {
                        let Some(partition) = index.partition().read(&stored.document)? else {
                            continue;
                        };
                        if partition != *query.partition {
                            continue;
                        }
                        let sort = match index.sort() {
                            Some(def) => match def.read(&stored.document)? {
                                Some(sort) => Some(sort),
                                None => continue,
                            },
                            None => None,
                        };
                        if let (Some(condition), Some(sort)) = (query.sort, &sort)
                            && !condition.matches(sort)
                        {
                            continue;
                        }
                        let position = Position {
                            sort,
                            key: key.clone(),
                        };
                        if query.is_after(&position) {
                            hits.push((position, stored.record(key)));
                        }
                    }
                }
            }
            hits.sort_by(|a, b| a.0.sort.cmp(&b.0.sort).then_with(|| a.0.key.cmp(&b.0.key)));
            if query.order == Order::Descending {
                hits.reverse();
            }
            Ok(read_range(
                schema,
                hits.into_iter().map(|(_, record)| record),
                query.fetch,
                query.filter,
                query.budget,
            ))
        })
    }

    async fn scan(&self, schema: &TableSchema, scan: &TableScan<'_>) -> Result<Fetched> {
        use std::ops::Bound;
        let lag = self.index_lag;
        self.with_table(schema, |table| {
            let start = scan.after.map_or(Bound::Unbounded, Bound::Excluded);
            let records = table
                .rows_at(scan.consistency, lag)
                .range((start, Bound::Unbounded))
                .filter(|(key, _)| scan.segment.is_none_or(|segment| segment.holds(key)))
                .map(|(key, stored)| stored.record(key));
            Ok(read_range(
                schema,
                records,
                scan.fetch,
                scan.filter,
                scan.budget,
            ))
        })
    }

    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        self.patch_record(schema, key, patch, condition, returning)
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        self.with_table(schema, |table| Ok(table.rows.len() as u64))
    }

    async fn table_size(&self, schema: &TableSchema) -> Result<crate::table::TableSize> {
        self.with_table(schema, |table| {
            Ok(crate::table::TableSize {
                records: Some(table.rows.len() as u64),
                bytes: None,
                exact: true,
            })
        })
    }

    // Batches (issue 21, item 6).

    async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            // All or nothing under the one lock: on a refusal, the table as it was comes back.
            let before = (
                table.rows.clone(),
                table.uniques.clone(),
                table.pending.len(),
            );
            let written = rows
                .iter()
                .map(|row| table.write(schema, row, Expect::Any, lag))
                .collect::<Result<Vec<_>>>();
            if written.is_err() {
                (table.rows, table.uniques) = (before.0, before.1);
                table.pending.truncate(before.2);
            }
            written
        })
    }

    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            for key in keys {
                if table.rows.contains_key(key) {
                    table.release(key);
                    table.rows.remove(key);
                    if lag {
                        table.pending.push_back((Instant::now(), key.clone(), None));
                    }
                }
            }
            Ok(())
        })
    }

    // Conditional writes (issue 21, item 5): checked and written under the table's lock.

    async fn put_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        condition: &Condition,
        existing: bool,
    ) -> Result<u64> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            let current = table.rows.get(row.key()).map(|s| s.record(row.key()));
            if existing && current.is_none() {
                return Err(Error::NotFound { what: "record" });
            }
            crate::table::patch::condition_holds(schema, current.as_ref(), condition)?;
            let expected = current.map_or(Expect::Absent, |c| Expect::Version(c.version));
            table.write(schema, row, expected, lag)
        })
    }

    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool> {
        let lag = !self.index_lag.is_zero();
        self.with_table(schema, |table| {
            let current = table.rows.get(key).map(|s| s.record(key));
            crate::table::patch::condition_holds(schema, current.as_ref(), condition)?;
            if current.is_none() {
                return Ok(false);
            }
            table.release(key);
            table.rows.remove(key);
            if lag {
                table.pending.push_back((Instant::now(), key.clone(), None));
            }
            Ok(true)
        })
    }
    // Transactions (issue 21, item 7): every step under the one lock of the tables, on
    // copies kept of the tables involved, which are put back when a step fails. A copy costs
    // the tables' size; the memory store is the reference, not the fast path.

    async fn transact(&self, steps: &[Step]) -> Result<()> {
        let lag = !self.index_lag.is_zero();
        let mut tables = self.tables();
        let mut saved: HashMap<String, Table> = HashMap::new();
        for (index, step) in steps.iter().enumerate() {
            let name = step.schema.name();
            if !saved.contains_key(name) {
                let table = tables
                    .tables
                    .get(name)
                    .ok_or_else(|| failed(index, no_table()))?;
                saved.insert(name.to_owned(), table.clone());
            }
        }
        for (index, step) in steps.iter().enumerate() {
            let applied = match tables.tables.get_mut(step.schema.name()) {
                Some(table) => table.apply(step, lag),
                None => Err(no_table()),
            };
            if let Err(err) = applied {
                tables.tables.extend(saved);
                return Err(failed(index, err));
            }
        }
        Ok(())
    }
}

impl Table {
    /// One step of a transaction.
    fn apply(&mut self, step: &Step, lag: bool) -> Result<()> {
        let current = self.rows.get(step.key()).map(|s| s.record(step.key()));
        match step.resolve(current.as_ref())? {
            Resolved::Insert(row) => self
                .write(&step.schema, &row, Expect::Absent, lag)
                .map(drop),
            Resolved::Replace(row, version) => self
                .write(&step.schema, &row, Expect::Version(version), lag)
                .map(drop),
            Resolved::Delete(key, _) => {
                self.release(&key);
                self.rows.remove(&key);
                if lag {
                    self.pending.push_back((Instant::now(), key, None));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
