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
//! Identifiers cannot be bound, so they are spliced in quoted. Every part of them is checked
//! before: the prefix and schema when the store is built, table and index names by
//! [`TableSchema`]'s builder (ASCII letters, digits, `_`, `-`, `.`), and the rest is ours, so
//! no identifier can hold a `"`.

use std::fmt::Write as _;

use storekit_core::table::{
    IndexEntry, IndexQuery, KeyType, KeyValue, MissingIndexes, Order, Record, RecordKey, Row,
    SortCondition, TableSchema, TableShape,
};
use storekit_core::{Error, Result};

use crate::tables::Tables;

/// The column of the record's partition key.
pub(crate) const PARTITION: &str = "partition_key";
/// The column of the record's sort key.
pub(crate) const SORT: &str = "sort_key";
/// PostgreSQL's longest identifier, in bytes (longer ones are cut, silently).
const POSTGRES_IDENTIFIER: usize = 63;

/// The two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn key_type(self, kind: KeyType) -> &'static str {
        match (self, kind) {
            (Self::Sqlite, KeyType::Text) => "TEXT",
            (Self::Sqlite, KeyType::Int) => "INTEGER",
            (Self::Sqlite, KeyType::Bytes) => "BLOB",
            (Self::Sqlite, KeyType::Float) => "REAL",
            (Self::Postgres, KeyType::Text) => "text COLLATE \"C\"",
            (Self::Postgres, KeyType::Int) => "bigint",
            (Self::Postgres, KeyType::Bytes) => "bytea",
            (Self::Postgres, KeyType::Float) => "double precision",
        }
    }

    fn document_type(self) -> &'static str {
        match self {
            Self::Sqlite => "TEXT",
            Self::Postgres => "jsonb",
        }
    }

    fn integer_type(self) -> &'static str {
        match self {
            Self::Sqlite => "INTEGER",
            Self::Postgres => "bigint",
        }
    }

    /// The name errors give the database.
    fn backend(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn placeholder(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("?{n}"),
            Self::Postgres => format!("${n}"),
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
    Float(f64),
    /// A NULL in a column of this type.
    Null(KeyType),
    /// A document, as JSON text.
    Document(String),
}

impl From<&KeyValue> for Param {
    fn from(value: &KeyValue) -> Self {
        match value {
            KeyValue::Text(text) => Self::Text(text.clone()),
            KeyValue::Int(int) => Self::Int(*int),
            KeyValue::Bytes(bytes) => Self::Bytes(bytes.clone()),
            KeyValue::Float(float) => Self::Float(*float),
        }
    }
}

/// A statement and its parameters, in the order of their placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
    /// Whether the text recurs, so that a driver's statement cache should keep it (false for
    /// a text that changes with the number of values, which would only push out the rest).
    pub(crate) recurs: bool,
}

/// Builds a [`Statement`], numbering placeholders as values are bound.
struct Builder {
    dialect: Dialect,
    sql: String,
    params: Vec<Param>,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::with_capacity(256),
            params: Vec::new(),
        }
    }

    fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    fn bind(&mut self, param: Param) -> &mut Self {
        let cast = matches!(
            (self.dialect, &param),
            (Dialect::Postgres, Param::Document(_))
        );
        self.params.push(param);
        let placeholder = self.dialect.placeholder(self.params.len());
        self.sql.push_str(&placeholder);
        if cast {
            self.sql.push_str("::jsonb");
        }
        self
    }

    /// `(a, b) op (?, ?)`, or `a op ?` for one column.
    fn compare(&mut self, columns: &[&str], op: &str, values: Vec<Param>) -> &mut Self {
        let one = columns.len() == 1;
        self.sql(if one { "" } else { "(" });
        self.sql(&list(columns.iter().map(|c| quote(c))));
        self.sql(if one { " " } else { ") " }).sql(op);
        self.sql(if one { " " } else { " (" });
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql(", ");
            }
            self.bind(value);
        }
        self.sql(if one { "" } else { ")" })
    }

    fn finish(self) -> Statement {
        Statement {
            sql: self.sql,
            params: self.params,
            recurs: true,
        }
    }
}

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

/// One declared table as SQL: its names, its DDL and its statements.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dialect: Dialect,
    schema: TableSchema,
    /// The table's quoted, qualified name.
    table: String,
    /// The primary key constraint's name, by which PostgreSQL reports a taken key.
    pub(crate) primary_key: String,
    partition: KeyType,
    sort: Option<KeyType>,
    indexes: Vec<IndexColumns>,
    uniques: Vec<UniqueColumns>,
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
        let bare = format!("{}{}", tables.prefix, schema.name());
        if dialect == Dialect::Postgres && bare.len() > POSTGRES_IDENTIFIER {
            return Err(Error::invalid(
                "table name",
                format!(
                    "{bare:?} (prefix and name) is {} bytes, over PostgreSQL's {POSTGRES_IDENTIFIER}",
                    bare.len()
                ),
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
        Ok(Self {
            dialect,
            schema: schema.clone(),
            table: tables.qualify_bare(&bare),
            // Index names are at least 3 characters, so `pk` is never one of theirs.
            primary_key: derived_name(&bare, "pk"),
            partition: schema.partition().kind(),
            sort: schema.sort().map(|s| s.kind()),
            indexes,
            uniques,
        })
    }

    fn builder(&self) -> Builder {
        Builder::new(self.dialect)
    }

    /// The table's key columns.
    fn key_columns(&self) -> Vec<&'static str> {
        std::iter::once(PARTITION)
            .chain(self.sort.map(|_| SORT))
            .collect()
    }

    fn key_params(key: &RecordKey) -> Vec<Param> {
        std::iter::once(Param::from(&key.partition))
            .chain(key.sort.as_ref().map(Param::from))
            .collect()
    }

    /// Every index column with its type, query indexes first, in the schema's order.
    fn index_columns(&self) -> Vec<(&str, KeyType)> {
        let query = self.indexes.iter().flat_map(|i| {
            std::iter::once(&i.partition)
                .chain(&i.sort)
                .map(|(c, k)| (c.as_str(), *k))
        });
        let unique = self
            .uniques
            .iter()
            .flat_map(|u| u.components.iter().map(|(c, k)| (c.as_str(), *k)));
        query.chain(unique).collect()
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
            .chain(self.key_columns().into_iter().map(str::to_owned));
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

    /// The DDL that adds the `missing` indexes to the live table: its columns, then (after
    /// they are filled) its indexes.
    pub(crate) fn add(&self, missing: &MissingIndexes) -> (Vec<String>, Vec<String>) {
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
        let mut b = self.builder();
        b.sql("UPDATE ").sql(&self.table).sql(" SET ");
        for (i, (column, value)) in sets.into_iter().enumerate() {
            if i > 0 {
                b.sql(", ");
            }
            b.sql(&quote(column)).sql(" = ").bind(value);
        }
        self.where_key(&mut b, &record.key);
        Ok(Some(b.finish()))
    }

    pub(crate) fn drop(&self) -> String {
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
        let index_columns = self.index_columns();
        let columns: Vec<String> = self
            .key_columns()
            .into_iter()
            .map(str::to_owned)
            .chain(["version".to_owned(), "document".to_owned()])
            .chain(index_columns.iter().map(|(c, _)| quote(c)))
            .collect();
        let mut params = self.row_params(row)?.into_iter();
        let mut b = self.builder();
        b.sql("INSERT INTO ").sql(&self.table).sql(" AS old (");
        b.sql(&columns.join(", ")).sql(") VALUES (");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                b.sql(", ");
            }
            if column == "version" {
                b.sql("1");
            } else if let Some(param) = params.next() {
                b.bind(param);
            }
        }
        b.sql(")");
        if upsert {
            b.sql(" ON CONFLICT (")
                .sql(&self.key_columns().join(", "))
                .sql(") DO UPDATE SET version = old.version + 1, document = excluded.document");
            for (column, _) in &index_columns {
                let column = quote(column);
                let _ = write!(b.sql, ", {column} = excluded.{column}");
            }
            b.sql(" RETURNING version");
        }
        Ok(b.finish())
    }

    /// Overwrites the record at `expected` with `row`, one version up; changes no row if the
    /// record is missing or at another version.
    pub(crate) fn replace(&self, row: &Row, expected: u64) -> Result<Statement> {
        let mut params = self.row_params(row)?;
        let key_count = self.key_columns().len();
        let rest = params.split_off(key_count);
        let mut rest = rest.into_iter();
        let mut b = self.builder();
        b.sql("UPDATE ")
            .sql(&self.table)
            .sql(" SET version = version + 1, document = ");
        if let Some(document) = rest.next() {
            b.bind(document);
        }
        for ((column, _), value) in self.index_columns().into_iter().zip(rest) {
            b.sql(", ").sql(&quote(column)).sql(" = ").bind(value);
        }
        self.where_key(&mut b, row.key());
        b.sql(" AND version = ").bind(version_param(expected));
        Ok(b.finish())
    }

    /// Deletes the record (at `expected`, if given).
    pub(crate) fn delete(&self, key: &RecordKey, expected: Option<u64>) -> Statement {
        let mut b = self.builder();
        b.sql("DELETE FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        if let Some(expected) = expected {
            b.sql(" AND version = ").bind(version_param(expected));
        }
        b.finish()
    }

    /// The record's version.
    pub(crate) fn version(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder();
        b.sql("SELECT version FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// The record's version and document.
    pub(crate) fn get(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder();
        b.sql("SELECT version, document FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// A row if the record exists (its document is not read).
    pub(crate) fn contains(&self, key: &RecordKey) -> Statement {
        let mut b = self.builder();
        b.sql("SELECT 1 FROM ").sql(&self.table);
        self.where_key(&mut b, key);
        b.finish()
    }

    /// The version and document of every record of `keys` that exists, in no order; `keys`
    /// must not be empty.
    pub(crate) fn get_many(&self, keys: &[&RecordKey]) -> Statement {
        let mut b = self.builder();
        b.sql("SELECT version, document FROM ").sql(&self.table);
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
        let mut b = self.builder();
        b.sql("SELECT version, document FROM ")
            .sql(&self.table)
            .sql(" WHERE ");
        for (i, ((column, _), value)) in self.uniques[u].components.iter().zip(values).enumerate() {
            if i > 0 {
                b.sql(" AND ");
            }
            b.sql(&quote(column)).sql(" = ").bind(Param::from(value));
        }
        b.finish()
    }

    /// One page of a query: the records of the partition meeting the sort condition, strictly
    /// after `query.after` in the query's order, in that order.
    pub(crate) fn query(&self, query: &IndexQuery<'_>) -> Statement {
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
            order.extend(self.key_columns());
            if let Some(position) = query.after {
                after.extend(Self::key_params(&position.key));
            }
        } else if let Some(position) = query.after {
            after.extend(position.key.sort.as_ref().map(Param::from));
        }
        let mut b = self.builder();
        b.sql("SELECT version, document FROM ")
            .sql(&self.table)
            .sql(" WHERE ")
            .sql(&quote(partition))
            .sql(" = ")
            .bind(Param::from(query.partition));
        if let (Some(condition), Some(sort)) = (query.sort, sort) {
            sort_condition(&mut b, &quote(sort), condition);
        }
        let descending = query.order == Order::Descending;
        if query.after.is_some() {
            if order.is_empty() {
                // A table without a sort key has one record per partition: the page that
                // ended on it was the last.
                b.sql(" AND 1 = 0");
            } else {
                b.sql(" AND ");
                b.compare(&order, if descending { "<" } else { ">" }, after);
            }
        }
        if !order.is_empty() {
            let direction = if descending { " DESC" } else { "" };
            b.sql(" ORDER BY ");
            b.sql(&list(
                order.iter().map(|c| format!("{}{direction}", quote(c))),
            ));
        }
        b.sql(" LIMIT ").bind(Param::Int(limit(query.fetch)));
        b.finish()
    }

    /// Up to `fetch` records after `after`, in key order.
    pub(crate) fn scan(&self, after: Option<&RecordKey>, fetch: usize) -> Statement {
        let columns = self.key_columns();
        let mut b = self.builder();
        b.sql("SELECT version, document FROM ").sql(&self.table);
        if let Some(after) = after {
            b.sql(" WHERE ");
            b.compare(&columns, ">", Self::key_params(after));
        }
        b.sql(" ORDER BY ").sql(&columns.join(", "));
        b.sql(" LIMIT ").bind(Param::Int(limit(fetch)));
        b.finish()
    }

    /// How many records the table holds.
    pub(crate) fn count(&self) -> Statement {
        Statement {
            sql: format!("SELECT COUNT(*) FROM {}", self.table),
            params: Vec::new(),
            recurs: true,
        }
    }

    /// A stored record from its version and document.
    /// A stored record from its version and document, its key read from the document.
    pub(crate) fn record(&self, version: i64, document: serde_json::Value) -> Result<Record> {
        let backend = self.dialect.backend();
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

/// A version as bound: one past `i64::MAX` matches no row, which is what such a version means.
fn version_param(version: u64) -> Param {
    Param::Int(i64::try_from(version).unwrap_or(-1))
}

fn limit(fetch: usize) -> i64 {
    i64::try_from(fetch).unwrap_or(i64::MAX)
}

fn sort_condition(b: &mut Builder, column: &str, condition: &SortCondition) {
    let mut compare = |op: &str, value: &KeyValue| {
        b.sql(" AND ").sql(column).sql(op).bind(Param::from(value));
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
            insert: format!("INSERT INTO {catalog} (name, shape) VALUES ({one}, {two})"),
            update: format!("UPDATE {catalog} SET shape = {two} WHERE name = {one}"),
            delete: format!("DELETE FROM {catalog} WHERE name = {one}"),
        }
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

/// A table's shape as the catalog holds it.
pub(crate) fn shape_json(schema: &TableSchema) -> Result<String> {
    serde_json::to_string(&schema.shape()).map_err(|e| Error::backend("sql", e))
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
        assert!(Layout::new(Dialect::Postgres, &tables, &long).is_err());
        assert!(Layout::new(Dialect::Sqlite, &tables, &long).is_ok());
        let users = TableSchema::builder("Users", KeyDef::text("id"))
            .build()
            .expect("valid");
        assert!(Layout::new(Dialect::Sqlite, &tables, &users).is_err());
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
        };
        let statement = layout.query(&query);
        assert_eq!(
            statement.sql,
            "SELECT version, document FROM \"things\" WHERE \"by-group:partition\" = ?1 \
             AND \"by-group:sort\" >= ?2 AND (\"by-group:sort\", \"partition_key\") < (?3, ?4) \
             ORDER BY \"by-group:sort\" DESC, \"partition_key\" DESC LIMIT ?5"
        );
        assert_eq!(statement.params.len(), 5);
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
