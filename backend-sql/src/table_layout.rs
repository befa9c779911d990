//! How a declared table of the tables store is laid out in SQL, and every statement on it, the
//! same for both dialects.
//!
//! A table `name` is the SQL table `{prefix}{name}`, with these columns:
//!
//! | column | holds |
//! |---|---|
//! | `partition_key`, `sort_key` | the record's key (`sort_key` only when the table has one) |
//! | `version` | the record's version |
//! | `document` | the canonical document: JSON text on SQLite, `jsonb` on PostgreSQL |
//! | `{index}:partition`, `{index}:sort` | the record's key in query index `{index}`, or NULL when it is not in it |
//! | `{unique}:1` … `{unique}:4` | the record's values in unique index `{unique}`, or NULL when it lacks one |
//!
//! Key columns have the key's type: text in byte order (SQLite's BINARY collation, PostgreSQL's
//! `COLLATE "C"`), 64-bit integers, bytes, and doubles, so SQL orders them as storekit does.
//! Columns are named after the index, never its position, so declaring another index leaves
//! every existing column where it was. Each query index is a B-tree over (partition, sort,
//! table key) holding only the records in it; each unique index is a UNIQUE index over its
//! components, which leaves records without them unconstrained (NULLs are distinct).
//!
//! The catalog `{prefix}storekit_tables` holds one row per table: its name and its shape (the
//! JSON of [`TableShape`]), which is what `describe_table` answers from.
//!
//! An exact-named table ([`TableSchemaBuilder::exact_name`]) is the SQL table `{name}`, with
//! no prefix; its catalog row is the store's own, as for any table, and its shape says
//! `exact_name`.
//!
//! [`TableSchemaBuilder::exact_name`]: storekit_core::table::TableSchemaBuilder::exact_name
//!
//! Identifiers cannot be bound, so they are spliced in quoted. Every part of them is checked
//! before: the prefix and schema when the store is built, table and index names by
//! [`TableSchema`]'s builder (ASCII letters, digits, `_`, `-`, `.`), and the rest is ours, so
//! no identifier can hold a `"`.
//!
//! A store keeps each table's layout in [`Layouts`], with the texts of its recurring
//! statements built once, so a call on a table builds no names and no SQL: it only binds
//! values.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use storekit_core::table::{
    Body, Fetched, IndexEntry, IndexQuery, KeyDef, KeyType, KeyValue, MissingIndexes, Order,
    Record, RecordKey, Row, Segment, SortCondition, StoredRecord, TableScan, TableSchema,
    TableShape,
};
use storekit_core::{Error, Result};

use crate::dialect::{Builder, Dialect, Param, Statement};
use crate::tables::Tables;

mod claims;
mod filter;
// PostgreSQL's in-place patches only (see the module).
#[cfg(feature = "postgres")]
mod patch;

/// The column of the record's partition key.
pub(crate) const PARTITION: &str = "partition_key";
/// The column of the record's sort key.
pub(crate) const SORT: &str = "sort_key";
/// PostgreSQL's longest identifier, in bytes (longer ones are cut, silently).
const POSTGRES_IDENTIFIER: usize = 63;

fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// A name derived from a table's for one of its indexes or constraints: `{table}:{suffix}`,
/// cut to fit PostgreSQL's identifiers with a hash of the whole name to keep it distinct.
/// Index and table names never hold `:`, so a derived name never meets a table's.
fn derived_name(table: &str, suffix: &str) -> String {
    let name = format!("{table}:{suffix}");
    if name.len() <= POSTGRES_IDENTIFIER {
        return name;
    }
    // FNV-1a: stable across Rust releases, unlike the standard library's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hash = format!("~{:08x}", hash >> 32);
    // Every part is ASCII, so any byte is a character boundary.
    format!("{}{hash}", &name[..POSTGRES_IDENTIFIER - hash.len()])
}

/// The columns and SQL index of one query index.
#[derive(Debug, Clone)]
struct IndexColumns {
    index: String,
    partition: (String, KeyType),
    sort: Option<(String, KeyType)>,
}

/// The columns and SQL index of one unique index.
#[derive(Debug, Clone)]
struct UniqueColumns {
    index: String,
    components: Vec<(String, KeyType)>,
}

/// The texts of a layout's recurring statements, each built once, when the layout is (see
/// [`Builder`]); `None` only while they are being built.
#[derive(Debug, Default)]
struct Texts {
    get: Option<Arc<str>>,
    contains: Option<Arc<str>>,
    version: Option<Arc<str>>,
    insert: Option<Arc<str>>,
    upsert: Option<Arc<str>>,
    import: Option<Arc<str>>,
    replace: Option<Arc<str>>,
    delete: Option<Arc<str>>,
    delete_at: Option<Arc<str>>,
    scan: Option<Arc<str>>,
    scan_after: Option<Arc<str>>,
    count: Option<Arc<str>>,
    by_unique: Vec<Arc<str>>,
}

/// How an `INSERT` treats the record's version and a taken key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Version 1; a taken key fails.
    Insert,
    /// Version 1, or one up over a taken key.
    Upsert,
    /// This version, over a taken key too.
    Import(u64),
}

/// What a query's text depends on, beyond the layout: its values only fill placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct QueryText {
    index: Option<usize>,
    condition: Option<u8>,
    descending: bool,
    /// The number of values of the position the page starts after, if any.
    after: Option<usize>,
}

/// One declared table as SQL: its names, its DDL and its statements.
#[derive(Debug)]
pub(crate) struct Layout {
    dialect: Dialect,
    schema: TableSchema,
    /// The table's quoted, qualified name.
    pub(crate) table: String,
    /// The table's name with the prefix, unquoted: what the database's catalog calls it.
    pub(crate) bare: String,
    /// The primary key constraint's name, by which PostgreSQL reports a taken key.
    pub(crate) primary_key: String,
    partition: KeyType,
    sort: Option<KeyType>,
    indexes: Vec<IndexColumns>,
    uniques: Vec<UniqueColumns>,
    texts: Texts,
    /// Query texts, built on first use: there are too many combinations to build them all.
    queries: RwLock<HashMap<QueryText, Arc<str>>>,
}

impl Layout {
    /// The layout of `schema` in the store whose names `tables` holds. Refuses a name that
    /// would be one of storekit's own tables, or too long for PostgreSQL with the prefix.
    pub(crate) fn new(dialect: Dialect, tables: &Tables, schema: &TableSchema) -> Result<Self> {
        if Tables::is_reserved(schema.name()) {
            return Err(Error::invalid(
                "table name",
                format!(
                    "{:?} is the name of one of storekit's own tables",
                    schema.name()
                ),
            ));
        }
        // The same limit for both dialects (and DynamoDB): PostgreSQL's identifiers.
        schema.check_stored_name(&tables.prefix)?;
        let bare = schema.stored_name(&tables.prefix);
        if Tables::is_sqlite_reserved(&bare) {
            return Err(Error::invalid(
                "table name",
                format!("{bare:?} (prefix and name) starts with sqlite_, which SQLite reserves"),
            ));
        }
        let indexes = schema
            .indexes()
            .iter()
            .map(|index| IndexColumns {
                index: derived_name(&bare, index.name()),
                partition: (
                    format!("{}:partition", index.name()),
                    index.partition().kind(),
                ),
                sort: index
                    .sort()
                    .map(|sort| (format!("{}:sort", index.name()), sort.kind())),
            })
            .collect();
        let uniques = schema
            .uniques()
            .iter()
            .map(|unique| UniqueColumns {
                index: derived_name(&bare, unique.name()),
                components: unique
                    .components()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("{}:{}", unique.name(), i + 1), c.kind()))
                    .collect(),
            })
            .collect();
        // Index names are at least 3 characters, so `pk` is never one of theirs.
        let primary_key = derived_name(&bare, "pk");
        let mut layout = Self {
            dialect,
            schema: schema.clone(),
            table: tables.qualify_bare(&bare),
            bare,
            primary_key,
            partition: schema.partition().kind(),
            sort: schema.sort().map(|s| s.kind()),
            indexes,
            uniques,
            texts: Texts::default(),
            queries: RwLock::default(),
        };
        layout.texts = layout.texts();
        Ok(layout)
    }

    /// The texts of the recurring statements, built from placeholder values of the right
    /// types (a text depends on their number and types only).
    fn texts(&self) -> Texts {
        let value = |kind| match kind {
            KeyType::Text => KeyValue::Text(String::new()),
            KeyType::Int => KeyValue::Int(0),
            KeyType::Bytes => KeyValue::Bytes(Vec::new()),
            KeyType::Float => KeyValue::Float(0.0),
        };
        let key = RecordKey {
            partition: value(self.partition),
            sort: self.sort.map(value),
        };
        let mut row = Self::key_params(&key);
        row.push(Param::Document(String::new()));
        row.extend(self.index_params(
            &vec![None; self.indexes.len()],
            &vec![None; self.uniques.len()],
        ));
        let text = |statement: Statement| Some(statement.sql);
        Texts {
            get: text(self.get(&key)),
            contains: text(self.contains(&key)),
            version: text(self.version(&key)),
            insert: text(self.insert_with(row.clone(), Write::Insert, None)),
            upsert: text(self.insert_with(row.clone(), Write::Upsert, None)),
            import: text(self.insert_with(row.clone(), Write::Import(1), None)),
            replace: text(self.replace_with(row, &key, 0, None)),
            delete: text(self.delete(&key, None)),
            delete_at: text(self.delete(&key, Some(0))),
            scan: text(self.scan(None, 0)),
            scan_after: text(self.scan(Some(&key), 0)),
            count: text(self.count()),
            by_unique: (0..self.uniques.len())
                .map(|u| {
                    let values: Vec<KeyValue> = self.uniques[u]
                        .components
                        .iter()
                        .map(|(_, kind)| value(*kind))
                        .collect();
                    self.by_unique(u, &values).sql
                })
                .collect(),
        }
    }

    fn builder(&self, known: Option<&Arc<str>>) -> Builder {
        Builder::new(self.dialect, known)
    }

    /// `text`, if it is the text of a statement on `key` (which has the table's key types
    /// when it comes through storekit's checks).
    fn keyed<'t>(&self, text: &'t Option<Arc<str>>, key: &RecordKey) -> Option<&'t Arc<str>> {
        text.as_ref()
            .filter(|_| key.sort.is_some() == self.sort.is_some())
    }

    /// `text`, if it is the text of a write of `row`.
    fn for_row<'t>(&self, text: &'t Option<Arc<str>>, row: &Row) -> Option<&'t Arc<str>> {
        self.keyed(text, row.key()).filter(|_| {
            row.indexes().len() == self.indexes.len() && row.uniques().len() == self.uniques.len()
        })
    }

    /// The table's key columns.
    fn key_columns(&self) -> &'static [&'static str] {
        if self.sort.is_some() {
            &[PARTITION, SORT]
        } else {
            &[PARTITION]
        }
    }

    fn key_params(key: &RecordKey) -> Vec<Param> {
        std::iter::once(Param::from(&key.partition))
            .chain(key.sort.as_ref().map(Param::from))
            .collect()
    }

    /// Every index column with its type, query indexes first, in the schema's order.
    fn index_columns(&self) -> impl Iterator<Item = (&str, KeyType)> {
        let query = self.indexes.iter().flat_map(|i| {
            std::iter::once(&i.partition)
                .chain(&i.sort)
                .map(|(c, k)| (c.as_str(), *k))
        });
        let unique = self
            .uniques
            .iter()
            .flat_map(|u| u.components.iter().map(|(c, k)| (c.as_str(), *k)));
        query.chain(unique)
    }

    /// The values of [`Layout::index_columns`] for a record with these entries.
    fn index_params(
        &self,
        indexes: &[Option<IndexEntry>],
        uniques: &[Option<Vec<KeyValue>>],
    ) -> Vec<Param> {
        let mut params = Vec::new();
        for (columns, entry) in self.indexes.iter().zip(indexes) {
            params.push(match entry {
                Some(entry) => Param::from(&entry.partition),
                None => Param::Null(columns.partition.1),
            });
            if let Some((_, kind)) = &columns.sort {
                params.push(match entry.as_ref().and_then(|e| e.sort.as_ref()) {
                    Some(sort) => Param::from(sort),
                    None => Param::Null(*kind),
                });
            }
        }
        for (columns, values) in self.uniques.iter().zip(uniques) {
            for (i, (_, kind)) in columns.components.iter().enumerate() {
                params.push(match values {
                    Some(values) => Param::from(&values[i]),
                    None => Param::Null(*kind),
                });
            }
        }
        params
    }

    /// `CREATE TABLE IF NOT EXISTS` with every column, then every index.
    pub(crate) fn create(&self) -> Vec<String> {
        let d = self.dialect;
        let mut columns = vec![format!(
            "{PARTITION} {} NOT NULL",
            d.key_type(self.partition)
        )];
        if let Some(sort) = self.sort {
            columns.push(format!("{SORT} {} NOT NULL", d.key_type(sort)));
        }
        columns.push(format!("version {} NOT NULL", d.integer_type()));
        columns.push(format!("document {} NOT NULL", d.document_type()));
        for (column, kind) in self.index_columns() {
            columns.push(format!("{} {}", quote(column), d.key_type(kind)));
        }
        columns.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            quote(&self.primary_key),
            self.key_columns().join(", ")
        ));
        let mut ddl = vec![format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
            self.table,
            columns.join(",\n    ")
        )];
        ddl.extend((0..self.indexes.len()).map(|i| self.create_index(i)));
        ddl.extend((0..self.uniques.len()).map(|u| self.create_unique(u)));
        ddl
    }

    fn create_index(&self, i: usize) -> String {
        let index = &self.indexes[i];
        let columns = std::iter::once(index.partition.0.as_str())
            .chain(index.sort.as_ref().map(|s| s.0.as_str()))
            .map(quote)
            .chain(self.key_columns().iter().map(|c| (*c).to_owned()));
        // Only records in the index are in it, as in a sparse DynamoDB index; a query's
        // `partition = ?` implies the condition, so both databases use it.
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {} IS NOT NULL",
            quote(&index.index),
            self.table,
            list(columns),
            quote(&index.partition.0)
        )
    }

    fn create_unique(&self, u: usize) -> String {
        let unique = &self.uniques[u];
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {} IS NOT NULL",
            quote(&unique.index),
            self.table,
            list(unique.components.iter().map(|(c, _)| quote(c))),
            quote(&unique.components[0].0)
        )
    }

    /// The DDL that adds the `missing` indexes to the live table: its columns (those not in
    /// `existing` already: an index dropped by hand leaves its columns), then (after they are
    /// filled) its indexes.
    pub(crate) fn add(
        &self,
        missing: &MissingIndexes,
        existing: &HashSet<String>,
    ) -> (Vec<String>, Vec<String>) {
        let d = self.dialect;
        let mut columns: Vec<&(String, KeyType)> = Vec::new();
        for &i in &missing.indexes {
            columns.push(&self.indexes[i].partition);
            columns.extend(&self.indexes[i].sort);
        }
        for &u in &missing.uniques {
            columns.extend(&self.uniques[u].components);
        }
        let alter = columns
            .into_iter()
            .filter(|(column, _)| !existing.contains(column))
            .map(|(column, kind)| {
                format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    self.table,
                    quote(column),
                    d.key_type(*kind)
                )
            })
            .collect();
        let indexes = missing
            .indexes
            .iter()
            .map(|&i| self.create_index(i))
            .chain(missing.uniques.iter().map(|&u| self.create_unique(u)))
            .collect();
        (alter, indexes)
    }

    /// The statements that empty the columns of the recorded query indexes `undeclared`,
    /// which the schema no longer declares, so that writes no longer keep them: emptied, they
    /// hold nothing stale when the index is declared again and filled from the records. The
    /// columns and SQL index stay (see `TableStatus::UndeclaredIndexes`).
    pub(crate) fn clear_index_columns(
        &self,
        recorded: &TableShape,
        undeclared: &[String],
    ) -> Vec<String> {
        recorded
            .indexes
            .iter()
            .filter(|index| undeclared.contains(&index.name))
            .map(|index| {
                // Index names were checked by the schema that recorded them: no `"`.
                let partition = quote(&format!("{}:partition", index.name));
                let mut sets = vec![format!("{partition} = NULL")];
                if index.sort.is_some() {
                    sets.push(format!("{} = NULL", quote(&format!("{}:sort", index.name))));
                }
                format!(
                    "UPDATE {} SET {} WHERE {partition} IS NOT NULL",
                    self.table,
                    sets.join(", ")
                )
            })
            .collect()
    }

    /// Writes the `missing` indexes' columns of one stored record, read from its document;
    /// `None` when the record is in none of them.
    pub(crate) fn fill(
        &self,
        missing: &MissingIndexes,
        record: &Record,
    ) -> Result<Option<Statement>> {
        let document = &record.document;
        let mut sets: Vec<(&str, Param)> = Vec::new();
        for &i in &missing.indexes {
            let (index, columns) = (&self.schema.indexes()[i], &self.indexes[i]);
            let partition = index.partition().read(document)?;
            let sort = index.sort().map(|s| s.read(document)).transpose()?;
            match (partition, sort) {
                (Some(p), None) => sets.push((&columns.partition.0, Param::from(&p))),
                (Some(p), Some(Some(s))) => {
                    sets.push((&columns.partition.0, Param::from(&p)));
                    if let Some((column, _)) = &columns.sort {
                        sets.push((column, Param::from(&s)));
                    }
                }
                _ => {}
            }
        }
        for &u in &missing.uniques {
            let (unique, columns) = (&self.schema.uniques()[u], &self.uniques[u]);
            let values = unique
                .components()
                .iter()
                .map(|c| c.read(document))
                .collect::<Result<Option<Vec<_>>>>()?;
            if let Some(values) = values {
                for ((column, _), value) in columns.components.iter().zip(&values) {
                    sets.push((column, Param::from(value)));
                }
            }
        }
        if sets.is_empty() {
            return Ok(None);
        }
        let mut b = self.builder(None);
        b.sql("UPDATE ").sql(&self.table).sql(" SET ");
        for (i, (column, value)) in sets.into_iter().enumerate() {
            if i > 0 {
                b.sql(", ");
            }
            b.quoted(column).sql(" = ").bind(value);
        }
        self.where_key(&mut b, &record.key);
        Ok(Some(b.finish()))
    }

    pub(crate) fn drop_table(&self) -> String {
        format!("DROP TABLE IF EXISTS {}", self.table)
    }

    fn where_key(&self, b: &mut Builder, key: &RecordKey) {
        b.sql(" WHERE ").sql(PARTITION).sql(" = ");
        b.bind(Param::from(&key.partition));
        if let Some(sort) = &key.sort {
            b.sql(" AND ").sql(SORT).sql(" = ").bind(Param::from(sort));
        }
    }

    fn row_params(&self, row: &Row) -> Result<Vec<Param>> {
        let document = serde_json::to_string(row.document())
            .map_err(|e| Error::invalid("document", e.to_string()))?;
        let mut params = Self::key_params(row.key());
        params.push(Param::Document(document));
        params.extend(self.index_params(row.indexes(), row.uniques()));
        Ok(params)
    }

    /// `INSERT` of `row` at version 1 (`RETURNING version` when `upsert`, which on a taken
    /// key overwrites the record one version up instead).
    pub(crate) fn insert(&self, row: &Row, upsert: bool) -> Result<Statement> {
        let (text, write) = if upsert {
            (&self.texts.upsert, Write::Upsert)
        } else {
            (&self.texts.insert, Write::Insert)
        };
        let known = self.for_row(text, row);
        Ok(self.insert_with(self.row_params(row)?, write, known))
    }

    /// `INSERT` of `row` at `version`, which on a taken key overwrites the record with the
    /// row and that version: how a copied record keeps its version.
    pub(crate) fn import(&self, row: &Row, version: u64) -> Result<Statement> {
        let known = self.for_row(&self.texts.import, row);
        Ok(self.insert_with(self.row_params(row)?, Write::Import(version), known))
    }

    /// [`Layout::insert`] or [`Layout::import`] of a row's values.
    fn insert_with(&self, params: Vec<Param>, write: Write, known: Option<&Arc<str>>) -> Statement {
        let keys = self.key_columns();
        let mut params = params.into_iter();
        let mut b = self.builder(known);
        let claims = self.claims_unique_values();
        let columns = |b: &mut Builder| {
            b.columns(keys).sql(", version, document");
            for (column, _) in self.index_columns() {
                b.sql(", ").quoted(column);
            }
        };
        if claims {
            b.sql("WITH ").sql(claims::NEW_ROW).sql(" (");
        } else {
            b.sql("INSERT INTO ").sql(&self.table).sql(" AS old (");
        }
        columns(&mut b);
        b.sql(if claims {
            ") AS (VALUES ("
        } else {
            ") VALUES ("
        });
        // The key's values, the version, then the document's and the index columns'.
        for i in 0..keys.len() {
            if i > 0 {
                b.sql(", ");
            }
            if let Some(param) = params.next() {
                b.bind(param);
            }
        }
        match write {
            Write::Import(version) => b.sql(", ").bind(version_param(version)),
            Write::Insert | Write::Upsert => b.sql(", 1"),
        };
        for param in params {
            b.sql(", ").bind(param);
        }
        b.sql(")");
        if claims {
            b.sql(")");
            self.claims(&mut b, |b| {
                b.sql(" WHERE (").columns(keys).sql(") IN (SELECT ");
                b.columns(keys).sql(" FROM ").sql(claims::NEW_ROW).sql(")");
            });
            b.sql(" INSERT INTO ").sql(&self.table).sql(" AS old (");
            columns(&mut b);
            b.sql(") SELECT ").sql(claims::NEW_ROW).sql(".* FROM ");
            b.sql(claims::NEW_ROW).sql(", claims");
        }
        let version = match write {
            Write::Insert => return b.finish(),
            Write::Upsert => "old.version + 1",
            Write::Import(_) => "excluded.version",
        };
        b.sql(" ON CONFLICT (")
            .columns(keys)
            .sql(") DO UPDATE SET version = ")
            .sql(version)
            .sql(", document = excluded.document");
        for (column, _) in self.index_columns() {
            b.sql(", ")
                .quoted(column)
                .sql(" = excluded.")
                .quoted(column);
        }
        if write == Write::Upsert {
            // A record at the last version is left as it is and returns no row, which the
            // caller reports as `next_version` does: `version + 1` would be a raw overflow on
            // PostgreSQL and turn into a REAL on SQLite.
            b.sql(" WHERE old.version < ")
                .sql(&MAX_VERSION_SQL)
                .sql(" RETURNING version");
        }
        b.finish()
    }

    /// Overwrites the record at `expected` with `row`, one version up; changes no row if the
    /// record is missing or at another version.
    pub(crate) fn replace(&self, row: &Row, expected: u64) -> Result<Statement> {
        let known = self.for_row(&self.texts.replace, row);
        Ok(self.replace_with(self.row_params(row)?, row.key(), expected, known))
    }

    /// [`Layout::replace`] of a row's values.
    fn replace_with(
        &self,
        params: Vec<Param>,
        key: &RecordKey,
        expected: u64,
        known: Option<&Arc<str>>,
    ) -> Statement {
        // The key's values are bound again below, in the condition.
        let mut rest = params.into_iter().skip(self.key_columns().len());
        let mut b = self.builder(known);
        if self.claims_unique_values() {
            // The new values are named once, in `new_row`, for the claims and the `SET`.
            b.sql("WITH ").sql(claims::NEW_ROW).sql(" (document");
            for (column, _) in self.index_columns() {
                b.sql(", ").quoted(column);
            }
            b.sql(") AS (VALUES (");
            if let Some(document) = rest.next() {
                b.bind(document);
            }
            for value in rest {
                b.sql(", ").bind(value);
            }
            b.sql("))");
            self.claims(&mut b, |b| self.where_key(b, key));
            b.sql(" UPDATE ")
                .sql(&self.table)
                .sql(" SET version = version + 1");
            for column in std::iter::once("document").chain(self.index_columns().map(|(c, _)| c)) {
                b.sql(", ")
                    .quoted(column)
                    .sql(" = ")
                    .sql(claims::NEW_ROW)
                    .sql(".");
                b.quoted(column);
            }
            b.sql(" FROM ").sql(claims::NEW_ROW).sql(", claims");
            self.where_key(&mut b, key);
            b.sql(" AND version = ").bind(version_param(expected));
            return b.finish();
        }
        b.sql("UPDATE ")
            .sql(&self.table)
            .sql(" SET version = version + 1, document = ");
        if let Some(document) = rest.next() {
            b.bind(document);
        }
        for ((column, _), value) in self.index_columns().zip(rest) {
            b.sql(", ").quoted(column).sql(" = ").bind(value);
        }
        self.where_key(&mut b, key);
        b.sql(" AND version = ").bind(version_param(expected));
        b.finish()
    }

    /// Deletes the record (at `expected`, if given).
    pub(crate) fn delete(&self, key: &RecordKey, expected: Option<u64>) -> Statement {
        let text = match expected {
            None => &self.texts.delete,
            Some(_) => &self.texts.delete_at,
        };
        let mut b = self.builder(self.keyed(text, key));
        b.sql("DELETE FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        if let Some(expected) = expected {
            b.sql(" AND version = ").bind(version_param(expected));
        }
        b.finish()
    }

    /// The record's version.
    pub(crate) fn version(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder(self.keyed(&self.texts.version, key));
        b.sql("SELECT version FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// The record's version and document.
    pub(crate) fn get(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder(self.keyed(&self.texts.get, key));
        b.sql("SELECT version, document FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// A row if the record exists (its document is not read).
    pub(crate) fn contains(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder(self.keyed(&self.texts.contains, key));
        b.sql("SELECT 1 FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// The version, document and key columns of every record of `keys` that exists, in no
    /// order (the key columns say which key each row answers); `keys` must not be empty.
    pub(crate) fn get_many(&self, keys: &[&RecordKey]) -> Statement {
        let mut b = self.builder(None);
        b.sql("SELECT version, document, ")
            .columns(self.key_columns());
        b.sql(" FROM ").sql(&self.table);
        match self.sort {
            None => {
                b.sql(" WHERE ").sql(PARTITION).sql(" IN (");
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        b.sql(", ");
                    }
                    b.bind(Param::from(&key.partition));
                }
            }
            Some(_) => {
                b.sql(" WHERE (").sql(PARTITION).sql(", ").sql(SORT);
                b.sql(") IN (VALUES ");
                for (i, key) in keys.iter().enumerate() {
                    b.sql(if i > 0 { ", (" } else { "(" });
                    let mut params = Self::key_params(key).into_iter();
                    if let Some(partition) = params.next() {
                        b.bind(partition);
                    }
                    for sort in params {
                        b.sql(", ").bind(sort);
                    }
                    b.sql(")");
                }
            }
        }
        b.sql(")");
        Statement {
            recurs: false,
            ..b.finish()
        }
    }

    /// The version and document of the record holding `values` in unique index `u`.
    pub(crate) fn by_unique(&self, u: usize, values: &[KeyValue]) -> Statement {
        let known = self
            .texts
            .by_unique
            .get(u)
            .filter(|_| values.len() == self.uniques[u].components.len());
        let mut b = self.builder(known);
        b.sql("SELECT version, document FROM ")
            .sql(&self.table)
            .sql(" WHERE ");
        for (i, ((column, _), value)) in self.uniques[u].components.iter().zip(values).enumerate() {
            if i > 0 {
                b.sql(" AND ");
            }
            b.quoted(column).sql(" = ").bind(Param::from(value));
        }
        b.finish()
    }

    /// One page of a query: the records of the partition meeting the sort condition, strictly
    /// after `query.after` in the query's order, in that order; with a filter or a read
    /// budget, a windowed read (see [`Layout::windowed`]).
    pub(crate) fn query(&self, query: &IndexQuery<'_>) -> Result<Read> {
        let (partition, sort): (&str, Option<&str>) = match query.index {
            None => (PARTITION, self.sort.map(|_| SORT)),
            Some(i) => {
                let index = &self.indexes[i];
                (
                    &index.partition.0,
                    index.sort.as_ref().map(|s| s.0.as_str()),
                )
            }
        };
        // An index orders by its sort key, then the table's key; the table by its sort key.
        let mut order: Vec<&str> = sort.into_iter().collect();
        let mut after: Vec<Param> = Vec::new();
        if let Some(position) = query.after {
            after.extend(position.sort.as_ref().map(Param::from));
        }
        if query.index.is_some() {
            order.extend(self.key_columns().iter().copied());
            if let Some(position) = query.after {
                after.extend(Self::key_params(&position.key));
            }
        } else if let Some(position) = query.after {
            after.extend(position.key.sort.as_ref().map(Param::from));
        }
        let descending = query.order == Order::Descending;
        let after_count = after.len();
        // The records of the range, from the cursor on: ` WHERE …`.
        let range = |b: &mut Builder| {
            b.sql(" WHERE ")
                .quoted(partition)
                .sql(" = ")
                .bind(Param::from(query.partition));
            if let (Some(condition), Some(sort)) = (query.sort, sort) {
                sort_condition(b, sort, condition);
            }
            if query.after.is_some() {
                if order.is_empty() {
                    // A table without a sort key has one record per partition: the page that
                    // ended on it was the last.
                    b.sql(" AND 1 = 0");
                } else {
                    b.sql(" AND ");
                    b.compare(&order, if descending { "<" } else { ">" }, after.clone());
                }
            }
        };
        if query.filter.is_some() || query.budget.is_some() {
            // A table without a sort key orders its one record per partition by that key.
            let order: &[&str] = if order.is_empty() {
                &[PARTITION]
            } else {
                &order
            };
            let window = Window {
                fetch: query.fetch,
                budget: query.budget,
            };
            return self.counted(order, descending, query.filter, window, query.index, range);
        }
        let text = QueryText {
            index: query.index,
            condition: query.sort.map(condition_text),
            descending,
            after: query.after.map(|_| after_count),
        };
        let known = self
            .queries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&text)
            .cloned();
        let mut b = self.builder(known.as_ref());
        b.sql("SELECT version, document");
        self.paged_columns(&mut b, query.index);
        b.sql(" FROM ").sql(&self.table);
        range(&mut b);
        if !order.is_empty() {
            order_by(&mut b, &order, descending);
        }
        b.sql(" LIMIT ").bind(Param::Int(limit(query.fetch)));
        let statement = b.finish();
        if known.is_none() {
            self.queries
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(text, Arc::clone(&statement.sql));
        }
        Ok(Read::Plain(statement, query.index))
    }

    /// `, partition_key[, sort_key][, <the index's sort column>]`: the columns after a read's
    /// own from which each row's key, and for a query on `index` its sort key, are read
    /// ([`Layout::paged_row`]), so that no document is parsed to page.
    fn paged_columns(&self, b: &mut Builder, index: Option<usize>) {
        b.sql(", ").columns(self.key_columns());
        if let Some(sort) = index.and_then(|i| self.indexes[i].sort.as_ref()) {
            b.sql(", ").quoted(&sort.0);
        }
    }

    /// How many columns [`Layout::paged_columns`] adds.
    fn paged_count(&self, index: Option<usize>) -> usize {
        self.key_columns().len()
            + usize::from(index.is_some_and(|i| self.indexes[i].sort.is_some()))
    }

    /// A record of a query, scan or `get_many` row: its key from the key columns at `at` and
    /// after, and the queried index's sort key from the column after them (see
    /// [`Layout::paged_columns`]), kept with the text for paging; `column` reads a column of
    /// the row as a key of a type, `None` for NULL.
    pub(crate) fn paged_row(
        &self,
        index: Option<usize>,
        version: i64,
        text: String,
        at: usize,
        column: impl Fn(usize, KeyType) -> Result<Option<KeyValue>>,
    ) -> Result<StoredRecord> {
        let missing = || Error::backend(self.dialect.name(), "a stored record has no key");
        let partition = column(at, self.partition)?.ok_or_else(missing)?;
        let sort = match self.sort {
            Some(kind) => Some(column(at + 1, kind)?.ok_or_else(missing)?),
            None => None,
        };
        let mut read = storekit_core::table::Document::new();
        let index_sort =
            index.and_then(|i| Some((self.schema.indexes()[i].sort()?, &self.indexes[i])));
        if let Some((def, columns)) = index_sort
            && let Some((_, kind)) = &columns.sort
            && let Some(value) = column(at + self.key_columns().len(), *kind)?
        {
            read.insert(def.field().to_owned(), value.to_json());
        }
        self.stored_read(RecordKey { partition, sort }, version, text, read)
    }

    /// A read that counts what it reads: the rows of the range (` WHERE …`, from `range`) in
    /// `order`, at most `window.budget` of them, numbered (`n`) and each marked as meeting the
    /// filter or not (`hit`); of these the hits, and the row where the budget ran out; then
    /// one row with no record that counts the rows of the range (within the budget); at most
    /// `window.fetch` rows in all.
    ///
    /// Both databases stream this: `row_number` needs no row ahead (where `lead` or a count
    /// over the whole window would make SQLite buffer the range), the outer query keeps the
    /// subquery's order (no `ORDER BY` of its own, which would sort the whole range), and the
    /// `LIMIT` stops the read at the page's last hit, so the count runs only when the range
    /// ended first, on a last page that has read it all already.
    ///
    /// ```sql
    /// SELECT version, document, hit, n FROM (
    ///   SELECT version, document, CAST(CASE WHEN <filter> THEN 1 ELSE 0 END AS BIGINT) AS hit,
    ///     row_number() OVER (ORDER BY <order>) AS n
    ///   FROM <table> WHERE <range> ORDER BY <order> LIMIT <budget>
    /// ) AS r WHERE hit = 1 OR n = <budget>
    /// UNION ALL SELECT NULL, NULL, CAST(0 AS BIGINT), count(*)
    ///   FROM (SELECT 1 FROM <table> WHERE <range> LIMIT <budget>) AS c
    /// LIMIT <fetch>
    /// ```
    fn windowed(
        &self,
        order: &[&str],
        descending: bool,
        filter: Option<&storekit_core::table::Condition>,
        window: Window,
        index: Option<usize>,
        range: impl Fn(&mut Builder),
    ) -> Result<Statement> {
        let mut b = self.builder(None);
        b.sql("SELECT version, document, hit, n");
        self.paged_columns(&mut b, index);
        b.sql(" FROM (SELECT version, document");
        self.paged_columns(&mut b, index);
        b.sql(", ");
        self.hit(&mut b, filter)?;
        b.sql(" AS hit, row_number() OVER (");
        order_by(&mut b, order, descending);
        b.sql(") AS n");
        self.range_in_order(&mut b, order, descending, window.budget, &range);
        b.sql(") AS r WHERE hit = 1");
        if let Some(budget) = window.budget {
            b.sql(" OR n = ").bind(Param::Int(budget_param(budget)));
        }
        b.sql(" UNION ALL SELECT NULL, NULL, CAST(0 AS BIGINT), count(*)");
        for _ in 0..self.paged_count(index) {
            b.sql(", NULL");
        }
        b.sql(" FROM (SELECT 1 FROM ").sql(&self.table);
        range(&mut b);
        if let Some(budget) = window.budget {
            b.sql(" LIMIT ").bind(Param::Int(budget_param(budget)));
        }
        b.sql(") AS c LIMIT ").bind(Param::Int(limit(window.fetch)));
        // Not kept in `queries`, but left to the driver's own bounded statement cache: a
        // service's filters come from its code, a few shapes whose values are bound, so the
        // text recurs (on SQLite the filter is one bound value), and preparing it again on
        // every page cost PostgreSQL a planning round each time (0.19 of raw, against 0.73).
        Ok(b.finish())
    }

    /// A read that counts what it reads (see [`Tally`]), as each database does it best:
    /// SQLite runs in this process, so its rows are stepped one at a time and the read stops
    /// at the page's last hit ([`Layout::stepped`]); PostgreSQL sends rows over the wire, so
    /// the statement itself must end where the page ends and say how many it read
    /// ([`Layout::windowed`]).
    fn counted(
        &self,
        order: &[&str],
        descending: bool,
        filter: Option<&storekit_core::table::Condition>,
        window: Window,
        index: Option<usize>,
        range: impl Fn(&mut Builder),
    ) -> Result<Read> {
        Ok(match self.dialect {
            Dialect::Sqlite => Read::Stepped(
                self.stepped(order, descending, filter, window, index, range)?,
                window,
                index,
            ),
            Dialect::Postgres => Read::Windowed(
                self.windowed(order, descending, filter, window, index, range)?,
                window,
                index,
            ),
        })
    }

    /// The rows of the range (` WHERE …`, from `range`) in `order`, at most `window.budget` of
    /// them, each marked as meeting the filter or not (`hit`), for the driver to count as it
    /// steps them (see [`Tally`]).
    ///
    /// The statement reads no row further than the driver steps: where the window function
    /// and the count of [`Layout::windowed`] cost SQLite two to three times the plain filtered
    /// read, this costs what that read costs, plus a row handed back per miss.
    ///
    /// ```sql
    /// SELECT version, document, CAST(CASE WHEN <filter> THEN 1 ELSE 0 END AS BIGINT) AS hit
    /// FROM <table> WHERE <range> ORDER BY <order> LIMIT <budget>
    /// ```
    fn stepped(
        &self,
        order: &[&str],
        descending: bool,
        filter: Option<&storekit_core::table::Condition>,
        window: Window,
        index: Option<usize>,
        range: impl Fn(&mut Builder),
    ) -> Result<Statement> {
        let mut b = self.builder(None);
        b.sql("SELECT version, document, ");
        self.hit(&mut b, filter)?;
        b.sql(" AS hit");
        self.paged_columns(&mut b, index);
        self.range_in_order(&mut b, order, descending, window.budget, range);
        // Left to the driver's statement cache, as a windowed read is (see there).
        Ok(b.finish())
    }

    /// ` FROM <table> WHERE <range> ORDER BY <order> LIMIT <budget>` (the range's ` WHERE …`
    /// from `range`; no `LIMIT` without a budget): the rows a counted read reads.
    fn range_in_order(
        &self,
        b: &mut Builder,
        order: &[&str],
        descending: bool,
        budget: Option<u64>,
        range: impl Fn(&mut Builder),
    ) {
        b.sql(" FROM ").sql(&self.table);
        range(b);
        order_by(b, order, descending);
        if let Some(budget) = budget {
            b.sql(" LIMIT ").bind(Param::Int(budget_param(budget)));
        }
    }

    /// `CAST(CASE WHEN <filter> THEN 1 ELSE 0 END AS BIGINT)`, or `CAST(1 AS BIGINT)` without
    /// a filter: whether a row of a counted read meets the filter.
    fn hit(&self, b: &mut Builder, filter: Option<&storekit_core::table::Condition>) -> Result<()> {
        match filter {
            Some(condition) => {
                b.sql("CAST(CASE WHEN ");
                filter::condition(
                    b,
                    condition,
                    &storekit_core::table::expr::bytes_fields(&self.schema),
                )?;
                b.sql(" THEN 1 ELSE 0 END AS BIGINT)");
            }
            None => {
                b.sql("CAST(1 AS BIGINT)");
            }
        }
        Ok(())
    }

    /// Counts the rows of a counted read (see [`Layout::counted`]) as they come.
    pub(crate) fn tally(&self, window: Window) -> Tally {
        Tally {
            backend: self.dialect.name(),
            window,
            fetched: Fetched {
                read_through: Some(Vec::new()),
                ..Fetched::default()
            },
        }
    }

    /// Up to `fetch` records after `after`, in key order.
    pub(crate) fn scan(&self, after: Option<&RecordKey>, fetch: usize) -> Statement {
        let columns = self.key_columns();
        let known = match after {
            None => self.texts.scan.as_ref(),
            Some(after) => self.keyed(&self.texts.scan_after, after),
        };
        let mut b = self.builder(known);
        b.sql("SELECT version, document");
        self.paged_columns(&mut b, None);
        b.sql(" FROM ").sql(&self.table);
        if let Some(after) = after {
            b.sql(" WHERE ");
            b.compare(columns, ">", Self::key_params(after));
        }
        b.sql(" ORDER BY ").columns(columns);
        b.sql(" LIMIT ").bind(Param::Int(limit(fetch)));
        b.finish()
    }

    /// One page of a scan, in key order: the plain [`Layout::scan`], or with a filter or a read
    /// budget a windowed read (see [`Layout::windowed`]).
    pub(crate) fn scan_read(&self, scan: &TableScan<'_>) -> Result<Read> {
        if scan.filter.is_none() && scan.budget.is_none() && scan.segment.is_none() {
            return Ok(Read::Plain(self.scan(scan.after, scan.fetch), None));
        }
        let columns = self.key_columns();
        let window = Window {
            fetch: scan.fetch,
            budget: scan.budget,
        };
        let range = |b: &mut Builder| {
            if let Some(after) = scan.after {
                b.sql(" WHERE ");
                b.compare(columns, ">", Self::key_params(after));
            }
            if let Some(segment) = &scan.segment {
                b.sql(if scan.after.is_some() {
                    " AND "
                } else {
                    " WHERE "
                });
                self.segment_clause(b, segment);
            }
        };
        self.counted(columns, false, scan.filter, window, None, range)
    }

    /// That the record is in `segment` of a parallel scan, by a hash of its partition key:
    /// SQLite's `storekit_segment` (storekit's own hash, registered on every connection),
    /// PostgreSQL's `hashtextextended` of the key as text (its sign bit cleared, so the
    /// remainder is never negative). A full read of the table on both: SQL has no segments of
    /// its own, so a segment bounds what a scan returns, not what the database reads.
    fn segment_clause(&self, b: &mut Builder, segment: &Segment) {
        let (index, total) = (i64::from(segment.index), i64::from(segment.total));
        match self.dialect {
            Dialect::Sqlite => {
                b.sql("storekit_segment(")
                    .quoted(PARTITION)
                    .sql(", ")
                    .bind(Param::Int(total))
                    .sql(") = ")
                    .bind(Param::Int(index));
            }
            Dialect::Postgres => {
                b.sql("((hashtextextended(CAST(")
                    .quoted(PARTITION)
                    .sql(" AS text), 0) & 9223372036854775807) % ")
                    .bind(Param::Int(total))
                    .sql(") = ")
                    .bind(Param::Int(index));
            }
        }
    }

    /// How many records of a query's range meet its filter: `SELECT COUNT(*)` over the range
    /// of the table's key, or of the index's columns (its B-tree), with the filter's `WHERE`.
    pub(crate) fn count_query(&self, query: &IndexQuery<'_>) -> Result<Statement> {
        let (partition, sort): (&str, Option<&str>) = match query.index {
            None => (PARTITION, self.sort.map(|_| SORT)),
            Some(i) => {
                let index = &self.indexes[i];
                (
                    &index.partition.0,
                    index.sort.as_ref().map(|s| s.0.as_str()),
                )
            }
        };
        let mut b = self.builder(None);
        b.sql("SELECT COUNT(*) FROM ").sql(&self.table);
        b.sql(" WHERE ")
            .quoted(partition)
            .sql(" = ")
            .bind(Param::from(query.partition));
        // A record out of the index has NULL in both its columns: the partition test skips it.
        if let (Some(condition), Some(sort)) = (query.sort, sort) {
            sort_condition(&mut b, sort, condition);
        }
        if let Some(filter) = query.filter {
            filter::and_where(
                &mut b,
                filter,
                &storekit_core::table::expr::bytes_fields(&self.schema),
            )?;
        }
        Ok(b.finish())
    }

    /// Deletes up to `batch` records expired at `now` (Unix seconds): what the background
    /// purge runs until fewer are deleted. `None` for a table whose records do not expire.
    /// The expiry test is the filter reads use (`expires_at <= now`, rendered for each
    /// dialect), so that a record the purge leaves is one reads return.
    pub(crate) fn purge_expired(&self, now: f64, batch: i64) -> Result<Option<Statement>> {
        let Some(field) = self.schema.ttl() else {
            return Ok(None);
        };
        let expired = storekit_core::table::Condition::le(field, serde_json::json!(now));
        let columns = self.key_columns();
        let mut b = self.builder(None);
        b.sql("DELETE FROM ").sql(&self.table).sql(" WHERE (");
        b.columns(columns).sql(") IN (SELECT ").columns(columns);
        b.sql(" FROM ").sql(&self.table).sql(" WHERE 1 = 1");
        filter::and_where(
            &mut b,
            &expired,
            &storekit_core::table::expr::bytes_fields(&self.schema),
        )?;
        b.sql(" LIMIT ").bind(Param::Int(batch)).sql(")");
        Ok(Some(b.finish()))
    }

    /// How many records the table holds.
    pub(crate) fn count(&self) -> Statement {
        Statement {
            sql: match &self.texts.count {
                Some(text) => Arc::clone(text),
                None => Arc::from(format!("SELECT COUNT(*) FROM {}", self.table)),
            },
            params: Vec::new(),
            recurs: true,
        }
    }

    /// A stored record from its key, version and document text, which is left unparsed
    /// (see [`StoredRecord`]).
    pub(crate) fn stored(
        &self,
        key: RecordKey,
        version: i64,
        text: String,
    ) -> Result<StoredRecord> {
        self.stored_read(key, version, text, storekit_core::table::Document::new())
    }

    fn stored_read(
        &self,
        key: RecordKey,
        version: i64,
        text: String,
        read: storekit_core::table::Document,
    ) -> Result<StoredRecord> {
        let version = u64::try_from(version).map_err(|_| {
            Error::backend(
                self.dialect.name(),
                "a stored record has a negative version",
            )
        })?;
        Ok(StoredRecord {
            key,
            version,
            body: Body::Text { text, read },
        })
    }

    /// A stored record from its version and document, its key read from the document.
    pub(crate) fn record(&self, version: i64, document: serde_json::Value) -> Result<Record> {
        let backend = self.dialect.name();
        let serde_json::Value::Object(document) = document else {
            return Err(Error::backend(
                backend,
                "a stored document is not a JSON object",
            ));
        };
        let version = u64::try_from(version)
            .map_err(|_| Error::backend(backend, "a stored record has a negative version"))?;
        Ok(Record {
            key: self.schema.key_of(&document)?,
            version,
            document,
        })
    }
}

/// The layouts of the tables a store has been called on, by table name, so that a call
/// builds no names and no statement texts.
///
/// An entry serves only a schema of the shape it was built for: a schema that declares
/// another index (as `ensure_table` adds), or another schema under the same name, gets a
/// layout of its own, which replaces the entry. Schemas of one shape have one layout: it
/// reads keys by their fields, which the shape holds, never through a computed key's function.
#[derive(Debug)]
pub(crate) struct Layouts {
    dialect: Dialect,
    by_name: RwLock<HashMap<String, Arc<Layout>>>,
}

impl Layouts {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            by_name: RwLock::default(),
        }
    }

    /// The layout of `schema` in the store whose names `tables` holds (see [`Layout::new`]).
    pub(crate) fn get(&self, tables: &Tables, schema: &TableSchema) -> Result<Arc<Layout>> {
        if let Some(layout) = self.cached(schema) {
            return Ok(layout);
        }
        let layout = Arc::new(Layout::new(self.dialect, tables, schema)?);
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(schema.name().to_owned(), Arc::clone(&layout));
        Ok(layout)
    }
}

impl Layouts {
    /// The layout of `schema`, if one was built and kept.
    pub(crate) fn cached(&self, schema: &TableSchema) -> Option<Arc<Layout>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(schema.name())
            .filter(|layout| same_shape(&layout.schema, schema))
            .cloned()
    }

    /// Forgets the layout of table `name` (dropped): the next call builds it again.
    #[cfg(feature = "sqlite")]
    pub(crate) fn forget(&self, name: &str) {
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

/// The shape of table `name` as the catalog records it (`recorded`), without the indexes
/// whose SQL index is not among `live` (the names of the table's SQL indexes): an index
/// dropped by hand is then missing, so `ensure_table` builds it again and reports it.
pub(crate) fn live_shape(
    tables: &Tables,
    name: &str,
    mut recorded: TableShape,
    live: &HashSet<String>,
) -> TableShape {
    let bare = stored_bare(tables, name, &recorded);
    recorded
        .indexes
        .retain(|index| live.contains(&derived_name(&bare, &index.name)));
    recorded
        .uniques
        .retain(|unique| live.contains(&derived_name(&bare, &unique.name)));
    recorded
}

/// The SQL table (unquoted) of the table `name` the catalog records as `shape`: with the
/// store's prefix, or without it for an exact-named table.
pub(crate) fn stored_bare(tables: &Tables, name: &str, shape: &TableShape) -> String {
    if shape.exact_name {
        name.to_owned()
    } else {
        format!("{}{name}", tables.prefix)
    }
}

impl Layout {
    /// The catalog row's shape (JSON) by which a store adopts the existing SQL table of an
    /// exact-named table that its catalog has no row for: one another store (with another
    /// prefix) created and shares. `columns` and `indexes` are the SQL table's column and
    /// index names. The table must have storekit's key, version and document columns; the
    /// declared indexes whose SQL index it lacks are left out of the shape, so `ensure_table`
    /// then adds them. Any other table, or a table that is not exact-named, is not adopted
    /// ([`not_ours`]).
    pub(crate) fn adopted_shape(
        &self,
        tables: &Tables,
        columns: &HashSet<String>,
        indexes: &HashSet<String>,
    ) -> Result<String> {
        let name = self.schema.name();
        if !self.schema.is_exact_name() {
            return Err(not_ours(name, &self.bare));
        }
        let required = [PARTITION, "version", "document"]
            .into_iter()
            .chain(self.sort.map(|_| SORT));
        let lacking: Vec<&str> = required.filter(|c| !columns.contains(*c)).collect();
        if !lacking.is_empty() {
            return Err(Error::SchemaMismatch {
                table: name.to_owned(),
                differences: vec![format!(
                    "the SQL table {:?} exists without storekit's columns {lacking:?}; \
                     storekit does not adopt it",
                    self.bare
                )],
            });
        }
        let shape = live_shape(tables, name, self.schema.shape(), indexes);
        serde_json::to_string(&shape).map_err(|e| Error::backend("sql", e))
    }
}

/// What refuses to adopt the SQL table `bare`, found where table `name` would be created
/// while the catalog has no row for it: another store's table, or anyone's, whose rows
/// storekit cannot read or write.
pub(crate) fn not_ours(name: &str, bare: &str) -> Error {
    Error::SchemaMismatch {
        table: name.to_owned(),
        differences: vec![format!(
            "the SQL table {bare:?} exists and is not a table of the tables store (its \
             catalog has no row for it); storekit does not adopt it"
        )],
    }
}

/// Whether `a` and `b` have one shape (`a.shape() == b.shape()`, without building either).
fn same_shape(a: &TableSchema, b: &TableSchema) -> bool {
    fn key(a: &KeyDef, b: &KeyDef) -> bool {
        a.field() == b.field() && a.kind() == b.kind()
    }
    fn sort(a: Option<&KeyDef>, b: Option<&KeyDef>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => key(a, b),
            (None, None) => true,
            _ => false,
        }
    }
    a.name() == b.name()
        && key(a.partition(), b.partition())
        && sort(a.sort(), b.sort())
        && a.indexes().len() == b.indexes().len()
        && a.indexes().iter().zip(b.indexes()).all(|(a, b)| {
            a.name() == b.name() && key(a.partition(), b.partition()) && sort(a.sort(), b.sort())
        })
        && a.uniques().len() == b.uniques().len()
        && a.uniques().iter().zip(b.uniques()).all(|(a, b)| {
            a.name() == b.name()
                && a.components().len() == b.components().len()
                && a.components()
                    .iter()
                    .zip(b.components())
                    .all(|(a, b)| key(a, b))
        })
}

/// [`storekit_core::table::MAX_VERSION`] as an SQL literal: a constant, never input.
static MAX_VERSION_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| storekit_core::table::MAX_VERSION.to_string());

/// A version as bound: one past `i64::MAX` matches no row, which is what such a version means.
fn version_param(version: u64) -> Param {
    Param::Int(i64::try_from(version).unwrap_or(-1))
}

fn limit(fetch: usize) -> i64 {
    i64::try_from(fetch).unwrap_or(i64::MAX)
}

/// Which [`SortCondition`] a query has, as far as its text is concerned.
fn condition_text(condition: &SortCondition) -> u8 {
    match condition {
        SortCondition::Eq(_) => 0,
        SortCondition::Lt(_) => 1,
        SortCondition::Le(_) => 2,
        SortCondition::Gt(_) => 3,
        SortCondition::Ge(_) => 4,
        SortCondition::Between(..) => 5,
        SortCondition::BeginsWith(prefix) => match prefix_end(prefix) {
            Some(_) => 6,
            None => 7,
        },
    }
}

fn sort_condition(b: &mut Builder, column: &str, condition: &SortCondition) {
    let mut compare = |op: &str, value: &KeyValue| {
        b.sql(" AND ")
            .quoted(column)
            .sql(op)
            .bind(Param::from(value));
    };
    match condition {
        SortCondition::Eq(x) => compare(" = ", x),
        SortCondition::Lt(x) => compare(" < ", x),
        SortCondition::Le(x) => compare(" <= ", x),
        SortCondition::Gt(x) => compare(" > ", x),
        SortCondition::Ge(x) => compare(" >= ", x),
        SortCondition::Between(low, high) => {
            compare(" >= ", low);
            compare(" <= ", high);
        }
        // A range rather than LIKE: byte order, no wildcards to escape, no case rules, and an
        // index range scan on both databases.
        SortCondition::BeginsWith(prefix) => {
            compare(" >= ", prefix);
            if let Some(end) = prefix_end(prefix) {
                compare(" < ", &end);
            }
        }
    }
}

/// A read statement, and how its rows are read.
#[derive(Debug)]
pub(crate) enum Read {
    /// Rows of `version, document` and the paged columns of the queried index (`None` for
    /// the table; see [`Layout::paged_row`]), each a record returned: what a read without a
    /// filter or a budget is.
    Plain(Statement, Option<usize>),
    /// Rows of `version, document, hit, n` and the paged columns (see [`Layout::windowed`]),
    /// the last one maybe a count with no record, for a [`Tally`].
    Windowed(Statement, Window, Option<usize>),
    /// Rows of `version, document, hit` and the paged columns (see [`Layout::stepped`]),
    /// one per record read, for a [`Tally`] to count until it is done.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Stepped(Statement, Window, Option<usize>),
}

impl Read {
    /// The read budget of a counted read.
    #[cfg(feature = "sqlite")]
    pub(crate) fn budget(&self) -> Option<u64> {
        match self {
            Self::Plain(..) => None,
            Self::Windowed(_, window, _) | Self::Stepped(_, window, _) => window.budget,
        }
    }
}

/// How many records a windowed read returns and reads at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    fetch: usize,
    budget: Option<u64>,
}

/// What a counted read found, tallied from its rows as they come: each record returned, how
/// many records had been read through it, and where the read stopped.
#[derive(Debug)]
pub(crate) struct Tally {
    backend: &'static str,
    window: Window,
    fetched: Fetched<StoredRecord>,
}

impl Tally {
    /// One row of the read: the `n`th record read (counting from 1), which met the filter or
    /// not (`hit`) and which `record` reads. Returns whether the read is done: the page is full
    /// or the budget spent on this row (then the next read continues after it).
    pub(crate) fn row(
        &mut self,
        n: u64,
        hit: bool,
        record: impl FnOnce() -> Result<StoredRecord>,
    ) -> Result<bool> {
        self.fetched.read = n;
        let cut = self.window.budget == Some(n);
        if !hit && !cut {
            return Ok(false);
        }
        let record = record()?;
        // The cut is rare (a read budget spent): its record is parsed whole.
        let cut = cut
            .then(|| record.clone().into_record(self.backend))
            .transpose()?
            .map(|record| record.document);
        if hit {
            self.fetched.records.push(record);
            if let Some(through) = &mut self.fetched.read_through {
                through.push(n);
            }
            if self.fetched.records.len() == self.window.fetch {
                return Ok(true);
            }
        }
        self.fetched.cut = cut;
        Ok(self.fetched.cut.is_some())
    }

    /// The range ended after `n` records read.
    pub(crate) fn ended(&mut self, n: u64) {
        self.fetched.read = n;
    }

    /// What the read found.
    pub(crate) fn finish(self) -> Fetched<StoredRecord> {
        self.fetched
    }
}

/// ` ORDER BY a, b` (each `DESC` when descending).
fn order_by(b: &mut Builder, order: &[&str], descending: bool) {
    let direction = if descending { " DESC" } else { "" };
    b.sql(" ORDER BY ");
    for (i, column) in order.iter().enumerate() {
        if i > 0 {
            b.sql(", ");
        }
        b.quoted(column).sql(direction);
    }
}

/// A read budget as bound (the layer keeps it within `i64`).
fn budget_param(budget: u64) -> i64 {
    i64::try_from(budget).unwrap_or(i64::MAX)
}

/// The smallest value above every value that starts with `prefix` (`None`: there is none).
/// Text is compared by its bytes, which for UTF-8 is the order of its characters, so the end
/// is the prefix with its last character that can grow grown by one.
pub(crate) fn prefix_end(prefix: &KeyValue) -> Option<KeyValue> {
    match prefix {
        KeyValue::Text(text) => {
            let mut chars: Vec<char> = text.chars().collect();
            while let Some(last) = chars.pop() {
                let next = match last {
                    '\u{d7ff}' => Some('\u{e000}'),
                    c => char::from_u32(u32::from(c) + 1),
                };
                if let Some(next) = next {
                    chars.push(next);
                    return Some(KeyValue::Text(chars.into_iter().collect()));
                }
            }
            None
        }
        KeyValue::Bytes(bytes) => {
            let mut bytes = bytes.clone();
            while let Some(last) = bytes.pop() {
                if last < u8::MAX {
                    bytes.push(last + 1);
                    return Some(KeyValue::Bytes(bytes));
                }
            }
            None
        }
        KeyValue::Int(_) | KeyValue::Float(_) => None,
    }
}

/// The catalog's statements for one store.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    /// `CREATE TABLE IF NOT EXISTS` of the catalog.
    pub(crate) create: String,
    /// The name and shape of table `?1`.
    pub(crate) read: String,
    /// Records table `?1` with shape `?2`.
    pub(crate) insert: String,
    /// Sets table `?1`'s shape to `?2`.
    pub(crate) update: String,
    /// Forgets table `?1`.
    pub(crate) delete: String,
}

impl Catalog {
    pub(crate) fn new(dialect: Dialect, tables: &Tables) -> Self {
        // SQLite compares identifiers without case, so `Things` and `things` would be one SQL
        // table: the catalog's names compare the same way, and a name that differs from the
        // one found only in case is refused (see `checked_shape`).
        let (name, shape, shape_text, one, two) = match dialect {
            Dialect::Sqlite => ("TEXT COLLATE NOCASE", "TEXT", "shape", "?1", "?2"),
            Dialect::Postgres => (
                "text COLLATE \"C\"",
                "jsonb",
                "shape::text",
                "$1",
                "$2::jsonb",
            ),
        };
        let catalog = &tables.catalog;
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {catalog} (name {name} PRIMARY KEY NOT NULL, \
                 shape {shape} NOT NULL)"
            ),
            read: format!("SELECT name, {shape_text} FROM {catalog} WHERE name = {one}"),
            insert: Self::insert_text(catalog, one, two),
            update: format!("UPDATE {catalog} SET shape = {two} WHERE name = {one}"),
            delete: format!("DELETE FROM {catalog} WHERE name = {one}"),
        }
    }

    /// Every table's name and shape (JSON text), in no particular order.
    pub(crate) fn list(dialect: Dialect, tables: &Tables) -> String {
        let shape = match dialect {
            Dialect::Sqlite => "shape",
            Dialect::Postgres => "shape::text",
        };
        format!("SELECT name, {shape} FROM {}", tables.catalog)
    }

    /// The catalog row of `schema` as a statement of its own, its values spliced in as
    /// literals: what a schema export records so that `ensure_table` finds the table.
    pub(crate) fn insert_row(
        dialect: Dialect,
        tables: &Tables,
        schema: &TableSchema,
    ) -> Result<String> {
        let shape = crate::migrations::literal(&shape_json(dialect, schema)?);
        let shape = match dialect {
            Dialect::Sqlite => shape,
            Dialect::Postgres => format!("{shape}::jsonb"),
        };
        let name = crate::migrations::literal(schema.name());
        Ok(Self::insert_text(&tables.catalog, &name, &shape))
    }

    fn insert_text(catalog: &str, name: &str, shape: &str) -> String {
        format!("INSERT INTO {catalog} (name, shape) VALUES ({name}, {shape})")
    }
}

/// The shape of table `name` from the catalog's row for it (`found`, its name and shape).
pub(crate) fn checked_shape(
    name: &str,
    found: Option<(String, String)>,
    backend: &'static str,
) -> Result<Option<TableShape>> {
    let Some((found, json)) = found else {
        return Ok(None);
    };
    if found != name {
        return Err(Error::invalid(
            "table name",
            format!(
                "{name:?} and the existing table {found:?} differ only in case, which {backend} \
                 does not tell apart"
            ),
        ));
    }
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| Error::backend(backend, e))
}

/// A table's shape as the catalog holds it (a failure names `dialect`'s database).
pub(crate) fn shape_json(dialect: Dialect, schema: &TableSchema) -> Result<String> {
    serde_json::to_string(&schema.shape()).map_err(|e| Error::backend(dialect.name(), e))
}

#[cfg(test)]
mod tests {
    use storekit_core::table::{KeyDef, Position};

    use super::*;

    fn things() -> TableSchema {
        TableSchema::builder("things", KeyDef::text("id"))
            .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
            .index("by-name", KeyDef::text("name"), None)
            .unique("pair", [KeyDef::text("a"), KeyDef::int("b")])
            .build()
            .expect("valid")
    }

    fn layout(dialect: Dialect, prefix: &str) -> Layout {
        let tables = Tables::new(None, prefix).expect("valid prefix");
        Layout::new(dialect, &tables, &things()).expect("valid layout")
    }

    #[test]
    fn columns_are_named_by_index_and_typed_by_key() {
        let ddl = layout(Dialect::Postgres, "app_").create();
        assert_eq!(ddl.len(), 4);
        for column in [
            "partition_key text COLLATE \"C\" NOT NULL",
            "version bigint NOT NULL",
            "document jsonb NOT NULL",
            "\"by-group:partition\" text COLLATE \"C\"",
            "\"by-group:sort\" bigint",
            "\"by-name:partition\" text COLLATE \"C\"",
            "\"pair:1\" text COLLATE \"C\"",
            "\"pair:2\" bigint",
            "CONSTRAINT \"app_things:pk\" PRIMARY KEY (partition_key)",
        ] {
            assert!(ddl[0].contains(column), "{column} in {}", ddl[0]);
        }
        assert!(ddl[1].contains(
            "\"app_things:by-group\" ON \"app_things\" (\"by-group:partition\", \
             \"by-group:sort\", partition_key) WHERE \"by-group:partition\" IS NOT NULL"
        ));
        assert!(ddl[3].starts_with("CREATE UNIQUE INDEX IF NOT EXISTS \"app_things:pair\""));
        let sqlite = layout(Dialect::Sqlite, "").create();
        assert!(
            sqlite[0].contains("\"by-group:sort\" INTEGER"),
            "{}",
            sqlite[0]
        );
        assert!(
            sqlite[0].contains("document TEXT NOT NULL"),
            "{}",
            sqlite[0]
        );
    }

    #[test]
    fn derived_names_fit_postgres_and_stay_distinct() {
        let long = "p".repeat(40);
        let a = derived_name(&format!("{long}{}", "t".repeat(20)), &"i".repeat(40));
        let b = derived_name(&format!("{long}{}", "t".repeat(20)), &"j".repeat(40));
        assert_eq!(a.len(), POSTGRES_IDENTIFIER);
        assert_ne!(a, b);
        assert_eq!(derived_name("t", "ix"), "t:ix");
    }

    #[test]
    fn names_storekit_keeps_or_postgres_would_cut_are_refused() {
        let tables = Tables::new(None, &"p".repeat(30)).expect("valid prefix");
        let long = TableSchema::builder("t".repeat(40), KeyDef::text("id"))
            .build()
            .expect("valid");
        let sqlite = Tables::new(None, "sqlite").expect("valid prefix");
        let underscored = TableSchema::builder("_x1", KeyDef::text("id"))
            .build()
            .expect("valid");
        assert!(Layout::new(Dialect::Postgres, &sqlite, &underscored).is_err());
        assert!(Tables::new(None, "SQLite_app").is_err());
        // One limit on both dialects, so a prefix that fits one fits the other.
        assert!(Layout::new(Dialect::Postgres, &tables, &long).is_err());
        assert!(Layout::new(Dialect::Sqlite, &tables, &long).is_err());
        let fits = TableSchema::builder("t".repeat(33), KeyDef::text("id"))
            .build()
            .expect("valid");
        assert!(Layout::new(Dialect::Postgres, &tables, &fits).is_ok());
        // Core's builder refuses storekit's own names now, before any layout sees them.
        assert!(
            TableSchema::builder("Users", KeyDef::text("id"))
                .build()
                .is_err()
        );
    }

    #[test]
    fn a_query_continues_after_its_position_in_its_order() {
        let layout = layout(Dialect::Sqlite, "");
        let position = Position {
            sort: Some(KeyValue::Int(3)),
            key: RecordKey::new("k"),
        };
        let partition = KeyValue::from("g");
        let query = IndexQuery {
            index: Some(0),
            partition: &partition,
            sort: Some(&SortCondition::Ge(KeyValue::Int(1))),
            order: Order::Descending,
            after: Some(&position),
            fetch: 11,
            filter: None,
            budget: None,
            consistency: storekit_core::table::Consistency::ReadAfterWrite,
        };
        let Read::Plain(statement, _) = layout.query(&query).expect("query") else {
            panic!("a plain read")
        };
        assert_eq!(
            &*statement.sql,
            "SELECT version, document, partition_key, \"by-group:sort\" FROM \"things\" \
             WHERE \"by-group:partition\" = ?1 AND \"by-group:sort\" >= ?2 AND (\"by-group:sort\", \"partition_key\") < (?3, ?4) \
             ORDER BY \"by-group:sort\" DESC, \"partition_key\" DESC LIMIT ?5"
        );
        assert_eq!(statement.params.len(), 5);
    }

    /// `things` with a sort key, for statements on a two-column key.
    /// A filtered or budgeted read on PostgreSQL numbers the rows it reads, streams (no
    /// `lead`, no sort of its own) and counts the range only after its hits.
    #[test]
    fn a_windowed_read_streams_in_the_range_order() {
        let layout = layout(Dialect::Postgres, "");
        let Ok(Read::Windowed(statement, ..)) = layout.scan_read(&budgeted_scan()) else {
            panic!("a windowed read")
        };
        assert_eq!(
            &*statement.sql,
            "SELECT version, document, hit, n, partition_key FROM (SELECT version, document, \
             partition_key, CAST(1 AS BIGINT) AS hit, row_number() OVER ( ORDER BY \
             \"partition_key\") AS n FROM \"things\" WHERE \"partition_key\" > $1 ORDER BY \
             \"partition_key\" LIMIT $2) AS r WHERE hit = 1 OR n = $3 UNION ALL SELECT NULL, \
             NULL, CAST(0 AS BIGINT), count(*), NULL FROM (SELECT 1 FROM \"things\" WHERE \
             \"partition_key\" > $4 LIMIT $5) AS c LIMIT $6"
        );
        assert_eq!(statement.params.len(), 6);
    }

    /// On SQLite the same read is the range, each row marked as a hit or not, stepped and
    /// counted by the driver.
    #[test]
    fn a_stepped_read_is_the_range_in_its_order() {
        let layout = layout(Dialect::Sqlite, "");
        let Ok(Read::Stepped(statement, ..)) = layout.scan_read(&budgeted_scan()) else {
            panic!("a stepped read")
        };
        assert_eq!(
            &*statement.sql,
            "SELECT version, document, CAST(1 AS BIGINT) AS hit, partition_key FROM \"things\" \
             WHERE \"partition_key\" > ?1 ORDER BY \"partition_key\" LIMIT ?2"
        );
        assert_eq!(statement.params.len(), 2);
    }

    /// A scan after `k` that reads at most 50 records.
    fn budgeted_scan() -> TableScan<'static> {
        static KEY: std::sync::LazyLock<RecordKey> =
            std::sync::LazyLock::new(|| RecordKey::new("k"));
        TableScan {
            after: Some(&KEY),
            fetch: 11,
            filter: None,
            budget: Some(50),
            consistency: storekit_core::table::Consistency::ReadAfterWrite,
            segment: None,
        }
    }

    fn sorted_things() -> TableSchema {
        TableSchema::builder("sorted", KeyDef::text("id"))
            .sort_key(KeyDef::int("at"))
            .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
            .unique("pair", [KeyDef::text("a"), KeyDef::int("b")])
            .build()
            .expect("valid")
    }

    fn same(a: Statement, b: Statement) {
        assert_eq!((a.sql, a.params, a.recurs), (b.sql, b.params, b.recurs));
    }

    #[test]
    fn cached_texts_are_the_texts_each_call_would_build() {
        let tables = Tables::new(None, "app_").expect("valid prefix");
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for (schema, sort) in [(things(), None), (sorted_things(), Some(KeyValue::Int(7)))] {
                let cached = Layout::new(dialect, &tables, &schema).expect("valid layout");
                let mut built = Layout::new(dialect, &tables, &schema).expect("valid layout");
                built.texts = Texts::default();
                let key = RecordKey {
                    partition: "k".into(),
                    sort: sort.clone(),
                };
                let mut document = serde_json::json!({
                    "id": "k", "group": "g", "rank": 3, "a": "x", "b": 2, "at": 7
                });
                if sort.is_none() {
                    document.as_object_mut().expect("object").remove("at");
                }
                let serde_json::Value::Object(document) = document else {
                    unreachable!()
                };
                let row = schema.row(document).expect("valid row");
                for upsert in [false, true] {
                    same(
                        cached.insert(&row, upsert).expect("insert"),
                        built.insert(&row, upsert).expect("insert"),
                    );
                }
                same(
                    cached.import(&row, 7).expect("import"),
                    built.import(&row, 7).expect("import"),
                );
                same(
                    cached.replace(&row, 4).expect("replace"),
                    built.replace(&row, 4).expect("replace"),
                );
                same(cached.get(&key), built.get(&key));
                same(cached.contains(&key), built.contains(&key));
                same(cached.version(&key), built.version(&key));
                same(cached.delete(&key, None), built.delete(&key, None));
                same(cached.delete(&key, Some(4)), built.delete(&key, Some(4)));
                same(cached.scan(None, 5), built.scan(None, 5));
                same(cached.scan(Some(&key), 5), built.scan(Some(&key), 5));
                same(cached.count(), built.count());
                let values = ["x".into(), KeyValue::Int(2)];
                same(cached.by_unique(0, &values), built.by_unique(0, &values));
                let partition = KeyValue::from("g");
                let position = Position {
                    sort: Some(KeyValue::Int(3)),
                    key: key.clone(),
                };
                let conditions = [
                    None,
                    Some(SortCondition::Eq(KeyValue::Int(1))),
                    Some(SortCondition::Between(KeyValue::Int(1), KeyValue::Int(9))),
                    Some(SortCondition::BeginsWith("a".into())),
                    Some(SortCondition::BeginsWith("\u{10ffff}".into())),
                ];
                for index in [None, Some(0)] {
                    for condition in &conditions {
                        for order in [Order::Ascending, Order::Descending] {
                            for after in [None, Some(&position)] {
                                let query = IndexQuery {
                                    index,
                                    partition: &partition,
                                    sort: condition.as_ref(),
                                    order,
                                    after,
                                    fetch: 11,
                                    filter: None,
                                    budget: None,
                                    consistency: storekit_core::table::Consistency::ReadAfterWrite,
                                };
                                // Twice: the first call builds the text, the second reuses it.
                                let query = |layout: &Layout| match layout.query(&query) {
                                    Ok(Read::Plain(statement, _)) => statement,
                                    other => panic!("not a plain read: {other:?}"),
                                };
                                same(query(&cached), query(&built));
                                same(query(&cached), query(&built));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_layout_serves_only_schemas_of_its_shape() {
        let tables = Tables::new(None, "").expect("valid prefix");
        let layouts = Layouts::new(Dialect::Sqlite);
        let first = layouts.get(&tables, &things()).expect("layout");
        // Another schema of the same shape shares the layout.
        let again = layouts.get(&tables, &things()).expect("layout");
        assert!(Arc::ptr_eq(&first, &again));
        // One more index (what `ensure_table` adds) or another key type does not.
        let grown = TableSchema::builder("things", KeyDef::text("id"))
            .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
            .index("by-name", KeyDef::text("name"), None)
            .index("by-size", KeyDef::int("size"), None)
            .unique("pair", [KeyDef::text("a"), KeyDef::int("b")])
            .build()
            .expect("valid");
        let other = TableSchema::builder("things", KeyDef::int("id"))
            .build()
            .expect("valid");
        for schema in [grown, other] {
            assert!(!same_shape(&schema, &things()));
            let layout = layouts.get(&tables, &schema).expect("layout");
            assert!(!Arc::ptr_eq(&first, &layout));
            assert_eq!(layout.indexes.len(), schema.indexes().len());
            assert!(same_shape(&layout.schema, &schema));
        }
        assert!(same_shape(&things(), &things()));
        assert_eq!(things().shape(), things().shape());
    }

    #[test]
    fn prefix_ends_bound_exactly_the_values_with_the_prefix() {
        let end = |v: KeyValue| prefix_end(&v);
        assert_eq!(end("ab".into()), Some("ac".into()));
        assert_eq!(end("a\u{10ffff}".into()), Some("b".into()));
        assert_eq!(end("\u{d7ff}".into()), Some("\u{e000}".into()));
        assert_eq!(end("\u{10ffff}".into()), None);
        assert_eq!(end(vec![1, 0xff].into()), Some(vec![2].into()));
        assert_eq!(end(vec![0xff].into()), None);
    }
}
