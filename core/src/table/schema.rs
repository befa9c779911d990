//! A table's schema, declared in code and checked by the rules of the strictest backend when
//! it is built.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::document::{self, Document, RESERVED_FIELD_PREFIX};
use super::value::{KeyType, KeyValue, RecordKey};
use crate::{Error, Result};

/// Most query indexes per table: DynamoDB's default quota of global secondary indexes.
pub const MAX_INDEXES: usize = 20;
/// Most unique indexes per table.
pub const MAX_UNIQUE_INDEXES: usize = 20;
/// Most components of one unique index.
pub const MAX_UNIQUE_COMPONENTS: usize = 4;
/// Most fields the `INCLUDE` projections of one table's indexes name in all: DynamoDB's limit
/// on a table's projected non-key attributes.
pub const MAX_INCLUDED_FIELDS: usize = 100;
/// Most tags per table: DynamoDB's limit.
pub const MAX_TAGS: usize = 50;
/// Shortest and longest table or index name. DynamoDB wants at least 3 characters; 40 leaves
/// room in PostgreSQL's 63-byte identifiers for a prefix and an index's derived name.
pub const NAME_LENGTH: (usize, usize) = (3, 40);
/// Table names storekit's own stores use, refused (in any case) on every backend so a schema
/// valid on one is valid on all.
pub const RESERVED_TABLE_NAMES: [&str; 8] = [
    "users",
    "oauth_accounts",
    "access_tokens",
    "kv",
    "kv_rowid",
    "storekit_meta",
    "storekit_tables",
    "storekit_unique",
];
/// Table names starting with one of these (in any case) are refused on every backend:
/// SQLite keeps them for its own tables and refuses to create one (without a store prefix,
/// the table's name is the SQL table's).
pub const RESERVED_TABLE_PREFIXES: [&str; 1] = ["sqlite_"];
/// Longest table name with its store's prefix, in bytes, on every backend: PostgreSQL's
/// identifiers (longer ones would be cut, silently). Every identifier derived from it (an
/// index's, a constraint's) is shortened to fit with a hash, and index columns
/// (`{index}:partition`) fit because index names are at most 40 bytes. Checked by
/// [`check_prefixed_name`] when a store ensures the table.
pub const MAX_PREFIXED_NAME: usize = 63;

// The longest column an index gets on SQL, `{index}:partition`, fits PostgreSQL's identifiers
// whatever the index's name: known when the schema is built, not when the table is made.
const _: () = assert!(NAME_LENGTH.1 + ":partition".len() <= MAX_PREFIXED_NAME);

/// Whether two table names name one table: they are equal but for ASCII letter case, which
/// SQLite (and DynamoDB Local) do not tell apart. The rule is the same on every backend, so a
/// schema valid on one is valid on all: a store holds at most one of them, and
/// [`TableStore::ensure_table`](super::TableStore::ensure_table) refuses the other with
/// [`Error::InvalidInput`] (`"table name"`).
#[must_use]
pub fn same_table_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Checks that table `name` with the store's `prefix` fits [`MAX_PREFIXED_NAME`]:
/// [`Error::InvalidInput`] (`"table name"`) otherwise.
pub fn check_prefixed_name(prefix: &str, name: &str) -> Result<()> {
    let length = prefix.len() + name.len();
    if length > MAX_PREFIXED_NAME {
        return Err(Error::invalid(
            "table name",
            format!(
                "{name:?} with the prefix {prefix:?} is {length} bytes, over the limit of \
                 {MAX_PREFIXED_NAME} (PostgreSQL's identifiers)"
            ),
        ));
    }
    Ok(())
}

type Compute = Arc<dyn Fn(&Document) -> Option<KeyValue> + Send + Sync>;

/// One key attribute: the document field it is read from, its type, and, for a computed key,
/// the function that derives it from the record (its result is written to the field).
#[derive(Clone)]
pub struct KeyDef {
    field: String,
    kind: KeyType,
    compute: Option<Compute>,
}

impl std::fmt::Debug for KeyDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDef")
            .field("field", &self.field)
            .field("kind", &self.kind)
            .field("computed", &self.compute.is_some())
            .finish()
    }
}

impl KeyDef {
    /// A key of type `kind` read from the record's top-level `field`.
    pub fn new(field: impl Into<String>, kind: KeyType) -> Self {
        Self {
            field: field.into(),
            kind,
            compute: None,
        }
    }

    /// A text key read from `field`.
    pub fn text(field: impl Into<String>) -> Self {
        Self::new(field, KeyType::Text)
    }

    /// An integer key read from `field`.
    pub fn int(field: impl Into<String>) -> Self {
        Self::new(field, KeyType::Int)
    }

    /// A bytes key read from `field` (standard base64 in the document).
    pub fn bytes(field: impl Into<String>) -> Self {
        Self::new(field, KeyType::Bytes)
    }

    /// A float key read from `field`.
    pub fn float(field: impl Into<String>) -> Self {
        Self::new(field, KeyType::Float)
    }

    /// Makes this key computed: on every write, `compute` derives it from the record and the
    /// result is stored in the key's field (removed when `None`, which leaves a query or
    /// unique index sparse). For example a case-folded name:
    /// `KeyDef::text("name_folded").computed(|doc| Some(doc["name"].as_str()?.to_lowercase().into()))`.
    #[must_use]
    pub fn computed(
        mut self,
        compute: impl Fn(&Document) -> Option<KeyValue> + Send + Sync + 'static,
    ) -> Self {
        self.compute = Some(Arc::new(compute));
        self
    }

    /// The document field that holds the key.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The key's type.
    #[must_use]
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// Whether storekit computes the key from the record.
    #[must_use]
    pub fn is_computed(&self) -> bool {
        self.compute.is_some()
    }

    /// Reads the key from a (computed, canonical) document.
    pub fn read(&self, document: &Document) -> Result<Option<KeyValue>> {
        KeyValue::from_field(self.kind, &self.field, document.get(&self.field))
    }

    /// Reads the key from a stored document (see [`KeyValue::from_stored_field`]).
    pub(crate) fn read_stored(&self, document: &Document) -> Result<Option<KeyValue>> {
        KeyValue::from_stored_field(self.kind, &self.field, document.get(&self.field))
    }

    fn shape(&self) -> KeyShape {
        KeyShape {
            field: self.field.clone(),
            kind: self.kind,
        }
    }
}

/// What a query index holds of each record besides its keys: DynamoDB's projection of a
/// global secondary index, and the same contract on every backend.
///
/// A query on an index that projects [`IndexProjection::All`] returns whole records. One on a
/// *partial* index ([`IndexProjection::KeysOnly`], [`IndexProjection::Include`]) returns what
/// the index holds: the table's key fields, the index's key fields and the included fields
/// that the record has, at version 0 (the index does not hold the version), on every backend;
/// [`Query::select`](super::Query::select) and filters may name only those fields. A query
/// that asks for [`Query::whole_records`](super::Query::whole_records) gets the whole records
/// instead (on DynamoDB, one `BatchGetItem` per page after the index `Query`).
///
/// ```
/// use storekit_core::table::IndexProjection;
///
/// let names = IndexProjection::include(["price", "name", "price"]);
/// assert_eq!(names.included(), ["name", "price"]);
/// assert_eq!(names.to_string(), "INCLUDE(name, price)");
/// assert!(IndexProjection::All.is_all());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndexProjection {
    /// Every field of the record (the default).
    #[default]
    All,
    /// The table's and the index's key fields only.
    KeysOnly,
    /// The key fields and these top-level fields (sorted, each once).
    Include(Vec<String>),
}

impl IndexProjection {
    /// The key fields and these top-level `fields`, kept sorted and each once, so that two
    /// lists of the same fields are one projection.
    pub fn include<F: Into<String>>(fields: impl IntoIterator<Item = F>) -> Self {
        let mut fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        fields.sort_unstable();
        fields.dedup();
        Self::Include(fields)
    }

    /// Whether the index holds whole records.
    #[must_use]
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    /// The included fields besides the keys (none for `All` and `KeysOnly`).
    #[must_use]
    pub fn included(&self) -> &[String] {
        match self {
            Self::Include(fields) => fields,
            Self::All | Self::KeysOnly => &[],
        }
    }
}

impl std::fmt::Display for IndexProjection {
    /// DynamoDB's spelling: `ALL`, `KEYS_ONLY`, `INCLUDE(a, b)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("ALL"),
            Self::KeysOnly => f.write_str("KEYS_ONLY"),
            Self::Include(fields) => write!(f, "INCLUDE({})", fields.join(", ")),
        }
    }
}

/// Read and write capacity units of a provisioned DynamoDB table or index, each 1 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Throughput {
    /// Read capacity units.
    pub read: u64,
    /// Write capacity units.
    pub write: u64,
}

impl Throughput {
    /// `read` and `write` capacity units.
    #[must_use]
    pub const fn new(read: u64, write: u64) -> Self {
        Self { read, write }
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} read, {} write units", self.read, self.write)
    }
}

/// How a table's reads and writes are paid for ([`TableSchemaBuilder::billing`]). DynamoDB
/// creates, exports and checks it; SQL and memory accept it and ignore it (they have no
/// capacity to provision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Billing {
    /// Per request (DynamoDB's `PAY_PER_REQUEST`), the default.
    #[default]
    OnDemand,
    /// Provisioned capacity (`PROVISIONED`): the table's; each global secondary index has the
    /// table's unless it declares its own ([`QueryIndex::throughput`]).
    Provisioned(Throughput),
}

impl Billing {
    /// Whether it is [`Billing::OnDemand`].
    #[must_use]
    pub fn is_on_demand(&self) -> bool {
        matches!(self, Self::OnDemand)
    }
}

impl std::fmt::Display for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OnDemand => f.write_str("on demand"),
            Self::Provisioned(throughput) => write!(f, "provisioned at {throughput}"),
        }
    }
}

/// A query index: records listed by a partition key and ordered by an optional sort key.
/// Records without the partition key (or the sort key, if declared) are not in the index.
///
/// [`TableSchemaBuilder::index`] declares one that projects whole records; build one with
/// [`QueryIndex::new`] for a partial projection or its own capacity, and declare it with
/// [`TableSchemaBuilder::query_index`]:
///
/// ```
/// use storekit_core::table::{Billing, KeyDef, QueryIndex, TableSchema, Throughput};
///
/// let products = TableSchema::builder("product-table", KeyDef::text("id"))
///     .query_index(
///         QueryIndex::new("product-name-index", KeyDef::text("name"), None)
///             .include(["price", "updated_at"])
///             .throughput(Throughput::new(10, 10)),
///     )
///     .billing(Billing::Provisioned(Throughput::new(20, 20)))
///     .build()?;
/// assert_eq!(products.indexes()[0].projection().to_string(), "INCLUDE(price, updated_at)");
/// # Ok::<(), storekit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QueryIndex {
    name: String,
    partition: KeyDef,
    sort: Option<KeyDef>,
    projection: IndexProjection,
    throughput: Option<Throughput>,
}

impl QueryIndex {
    /// An index `name` on `partition` (and `sort`), projecting whole records.
    pub fn new(name: impl Into<String>, partition: KeyDef, sort: Option<KeyDef>) -> Self {
        Self {
            name: name.into(),
            partition,
            sort,
            projection: IndexProjection::All,
            throughput: None,
        }
    }

    /// What the index holds of each record ([`IndexProjection`]).
    #[must_use]
    pub fn projected(mut self, projection: IndexProjection) -> Self {
        self.projection = projection;
        self
    }

    /// Holds the key fields only ([`IndexProjection::KeysOnly`]).
    #[must_use]
    pub fn keys_only(self) -> Self {
        self.projected(IndexProjection::KeysOnly)
    }

    /// Holds the key fields and these top-level fields ([`IndexProjection::include`]).
    #[must_use]
    pub fn include<F: Into<String>>(self, fields: impl IntoIterator<Item = F>) -> Self {
        self.projected(IndexProjection::include(fields))
    }

    /// The index's own capacity, on a table with [`Billing::Provisioned`] (by default it has
    /// the table's); on an on-demand table, [`TableSchemaBuilder::build`] refuses it.
    #[must_use]
    pub fn throughput(mut self, throughput: Throughput) -> Self {
        self.throughput = Some(throughput);
        self
    }

    /// The index's name (on DynamoDB, its GSI's name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index's partition key.
    #[must_use]
    pub fn partition(&self) -> &KeyDef {
        &self.partition
    }

    /// The index's sort key, if any.
    #[must_use]
    pub fn sort(&self) -> Option<&KeyDef> {
        self.sort.as_ref()
    }

    /// What the index holds of each record.
    #[must_use]
    pub fn projection(&self) -> &IndexProjection {
        &self.projection
    }

    /// The capacity the index declares, if any (see [`TableSchema::index_throughput`] for
    /// the one it gets).
    #[must_use]
    pub fn declared_throughput(&self) -> Option<Throughput> {
        self.throughput
    }

    fn shape(&self) -> IndexShape {
        IndexShape {
            name: self.name.clone(),
            partition: self.partition.shape(),
            sort: self.sort.as_ref().map(KeyDef::shape),
            projection: self.projection.clone(),
            throughput: self.throughput,
        }
    }
}

/// A unique index: no two records hold the same values in all its components. A record that
/// lacks any component is not constrained.
#[derive(Debug, Clone)]
pub struct UniqueIndex {
    name: String,
    components: Vec<KeyDef>,
}

impl UniqueIndex {
    /// The index's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its components, in order.
    #[must_use]
    pub fn components(&self) -> &[KeyDef] {
        &self.components
    }

    fn shape(&self) -> UniqueShape {
        UniqueShape {
            name: self.name.clone(),
            components: self.components.iter().map(KeyDef::shape).collect(),
        }
    }
}

/// A table's declaration: its name, key, query indexes and unique indexes. Cheap to clone.
///
/// ```
/// use storekit_core::table::{KeyDef, TableSchema};
///
/// let products = TableSchema::builder("products", KeyDef::text("id"))
///     .index("product-name-index", KeyDef::text("name"), Some(KeyDef::float("updated_at")))
///     .unique("product-sku", [KeyDef::text("sku")])
///     .build()?;
/// assert_eq!(products.indexes()[0].name(), "product-name-index");
/// # Ok::<(), storekit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TableSchema(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: String,
    partition: KeyDef,
    sort: Option<KeyDef>,
    indexes: Vec<QueryIndex>,
    uniques: Vec<UniqueIndex>,
    /// The computed keys, each once, in declaration order.
    computed: Vec<KeyDef>,
    /// Every distinct key field with its type, once, in declaration order.
    key_fields: Vec<(String, KeyType)>,
    /// The top-level field holding the record's expiry, in Unix seconds.
    ttl: Option<String>,
    /// Whether the table is named without the store's prefix.
    exact_name: bool,
    /// How the table's capacity is paid for.
    billing: Billing,
    /// The table's tags.
    tags: BTreeMap<String, String>,
    /// The attribute versions are kept in, when not [`DEFAULT_VERSION_ATTRIBUTE`].
    version_attribute: Option<String>,
}

/// The attribute a record's version is kept in on DynamoDB unless the schema names another
/// ([`TableSchemaBuilder::version_attribute`]). The `_storekit` prefix is reserved in
/// documents, so no document field can collide with it.
pub const DEFAULT_VERSION_ATTRIBUTE: &str = "_storekit_version";

/// Builds a [`TableSchema`]; [`TableSchemaBuilder::build`] checks it.
#[derive(Debug)]
pub struct TableSchemaBuilder {
    name: String,
    partition: KeyDef,
    sort: Option<KeyDef>,
    indexes: Vec<QueryIndex>,
    uniques: Vec<UniqueIndex>,
    ttl: Option<String>,
    exact_name: bool,
    billing: Billing,
    tags: BTreeMap<String, String>,
    version_attribute: Option<String>,
}

impl TableSchemaBuilder {
    /// Keeps records' versions in the top-level attribute `name` rather than
    /// [`DEFAULT_VERSION_ATTRIBUTE`] (`_storekit_version`), so that storekit and another client
    /// of the same DynamoDB table check one version: PynamoDB's `VersionAttribute` is a number
    /// attribute (often called `version`) that its model increments on every save and
    /// conditions each save on, exactly as storekit does with its own. Naming it here makes
    /// every storekit read, write and condition on DynamoDB use it, so a write by either
    /// client makes the other's stale write fail ([`Conflict`](crate::Error::Conflict) for
    /// storekit). An item without it reads at version 0, as always.
    ///
    /// The name follows the field name rules (1 to
    /// [`MAX_FIELD_NAME_BYTES`](super::MAX_FIELD_NAME_BYTES) bytes, not starting with
    /// `_storekit` unless it is the default, not a key, index or ttl field). It is then the
    /// version's, not the document's: on every backend a document holding a top-level field
    /// of that name is [`Error::InvalidInput`] (`"document"`), and a condition, selection or
    /// patch on it is refused too, so that all backends keep one contract. On SQLite and
    /// PostgreSQL the version stays in the table's `version` column and on memory beside the
    /// document: there the name only reserves the field and is recorded in the catalog, so
    /// that `storekit copy` to DynamoDB keeps it. A table's version attribute is fixed when it
    /// is created: declaring another later is a [`SchemaMismatch`](crate::Error::SchemaMismatch)
    /// (on DynamoDB only where storekit's catalog recorded one; a table adopted without it
    /// takes the declared one).
    ///
    /// ```
    /// use storekit_core::table::{KeyDef, TableSchema};
    ///
    /// // The table a PynamoDB model with `version = VersionAttribute()` also writes.
    /// let products = TableSchema::builder("product-table", KeyDef::text("id"))
    ///     .exact_name()
    ///     .version_attribute("version")
    ///     .build()?;
    /// assert_eq!(products.version_attribute(), "version");
    /// # Ok::<(), storekit_core::Error>(())
    /// ```
    #[must_use]
    pub fn version_attribute(mut self, name: impl Into<String>) -> Self {
        self.version_attribute = Some(name.into());
        self
    }

    /// Names the table exactly: the database's table is called by the schema's name, without
    /// the store's prefix, on every backend, so a table made by someone else (`product-table`,
    /// from Terraform) can be opened by its own name. The name rules are unchanged: 3 to 40
    /// characters, none of storekit's own table names ([`RESERVED_TABLE_NAMES`]) nor
    /// [`RESERVED_TABLE_PREFIXES`], and a store holds at most one of two names equal but for
    /// case ([`same_table_name`]).
    ///
    /// The table is then shared by every store that declares it, whatever their prefixes: each
    /// store keeps its own catalog entry for it (in `{prefix}storekit_tables` on SQL, in
    /// `{prefix}storekit_unique` on DynamoDB), and the first `ensure_table` creates it. So that
    /// sharing cannot break a rule, an exact-named table may have no unique index
    /// ([`Error::InvalidInput`] from [`TableSchemaBuilder::build`]): on DynamoDB a unique
    /// index's markers live in the store's own `{prefix}storekit_unique`, where two stores
    /// would each enforce it alone. Dropping the table (`drop_table`, or a store's whole
    /// `drop_tables` when its catalog records it) drops it for every store. A store holds one
    /// table of a name: declaring it exact in one schema and prefixed in another is
    /// [`Error::SchemaMismatch`] from `ensure_table`.
    ///
    /// ```
    /// use storekit_core::table::{KeyDef, TableSchema};
    ///
    /// let products = TableSchema::builder("product-table", KeyDef::text("id"))
    ///     .index("product-name-index", KeyDef::text("name"), None)
    ///     .exact_name()
    ///     .build()?;
    /// assert!(products.is_exact_name());
    /// assert_eq!(products.stored_name("shop_"), "product-table");
    /// # Ok::<(), storekit_core::Error>(())
    /// ```
    #[must_use]
    pub fn exact_name(mut self) -> Self {
        self.exact_name = true;
        self
    }

    /// Makes records expire: `field` is a top-level field holding the time, in Unix seconds
    /// (a number, fractions allowed), at and after which the record is gone. An expired record
    /// is never returned by any read, counted, or held against an insert of its key or its
    /// unique values, on every backend, even before the database deletes it (DynamoDB's
    /// native TTL, enabled on this attribute, deletes within days; SQL and memory purge it).
    /// A record without the field, or with a value that is not a number, never expires.
    ///
    /// ```
    /// use storekit_core::table::{KeyDef, TableSchema};
    ///
    /// let sessions = TableSchema::builder("sessions", KeyDef::text("id"))
    ///     .ttl("expires_at")
    ///     .build()?;
    /// assert_eq!(sessions.ttl(), Some("expires_at"));
    /// # Ok::<(), storekit_core::Error>(())
    /// ```
    #[must_use]
    pub fn ttl(mut self, field: impl Into<String>) -> Self {
        self.ttl = Some(field.into());
        self
    }

    /// Gives the table a sort key.
    #[must_use]
    pub fn sort_key(mut self, sort: KeyDef) -> Self {
        self.sort = Some(sort);
        self
    }

    /// Declares a query index that projects whole records, with the table's capacity.
    #[must_use]
    pub fn index(self, name: impl Into<String>, partition: KeyDef, sort: Option<KeyDef>) -> Self {
        self.query_index(QueryIndex::new(name, partition, sort))
    }

    /// Declares a query index built with [`QueryIndex::new`]: a partial projection
    /// ([`IndexProjection`]) or its own capacity.
    #[must_use]
    pub fn query_index(mut self, index: QueryIndex) -> Self {
        self.indexes.push(index);
        self
    }

    /// How the table's capacity is paid for: [`Billing::OnDemand`] (the default) or
    /// [`Billing::Provisioned`], with each global secondary index at the table's throughput
    /// unless it declares its own. DynamoDB creates the table so (an index added later gets
    /// its throughput too), the Terraform and CloudFormation exports render it, and
    /// `ensure_table` reports a live table billed otherwise as
    /// [`Error::SchemaMismatch`]. SQL and memory accept it and ignore it.
    ///
    /// ```
    /// use storekit_core::table::{Billing, KeyDef, TableSchema, Throughput};
    ///
    /// let products = TableSchema::builder("products", KeyDef::text("id"))
    ///     .index("by-name", KeyDef::text("name"), None)
    ///     .billing(Billing::Provisioned(Throughput::new(20, 20)))
    ///     .build()?;
    /// assert_eq!(products.index_throughput(0), Some(Throughput::new(20, 20)));
    /// # Ok::<(), storekit_core::Error>(())
    /// ```
    #[must_use]
    pub fn billing(mut self, billing: Billing) -> Self {
        self.billing = billing;
        self
    }

    /// Tags the table (`key` 1 to 128 characters, not starting with `aws:`; `value` up to
    /// 256; at most [`MAX_TAGS`]). A second tag with one key replaces the first. DynamoDB
    /// creates the table with them, the exports render them, and `ensure_table` reports a
    /// declared tag the live table lacks or holds with another value as
    /// [`Error::SchemaMismatch`]; tags the schema does not declare are left alone. SQL and
    /// memory accept them and ignore them.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Declares a unique index over 1 to 4 components.
    #[must_use]
    pub fn unique(
        mut self,
        name: impl Into<String>,
        components: impl IntoIterator<Item = KeyDef>,
    ) -> Self {
        self.uniques.push(UniqueIndex {
            name: name.into(),
            components: components.into_iter().collect(),
        });
        self
    }

    /// Checks the schema by the rules of the strictest backend: names, counts, and one type
    /// and at most one computation per field.
    pub fn build(self) -> Result<TableSchema> {
        check_name("table name", &self.name)?;
        if RESERVED_TABLE_NAMES
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(&self.name))
        {
            return Err(bad(format!(
                "table name {:?} is one of storekit's own tables",
                self.name
            )));
        }
        if let Some(reserved) = RESERVED_TABLE_PREFIXES.iter().find(|prefix| {
            self.name
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        }) {
            return Err(bad(format!(
                "table name {:?} starts with {reserved:?}, which a backend keeps for itself",
                self.name
            )));
        }
        if let Some(version) = &self.version_attribute
            && version != DEFAULT_VERSION_ATTRIBUTE
        {
            if version.is_empty()
                || version.len() > crate::validate::MAX_FIELD_NAME_BYTES
                || version.starts_with(RESERVED_FIELD_PREFIX)
                || version.contains(['.', '[', ']', '"', '\0'])
            {
                return Err(bad(format!(
                    "version attribute {version:?}: 1 to {} bytes, no `.`, `[`, `]`, `\"` or \
                     NUL, and not starting with {RESERVED_FIELD_PREFIX:?}",
                    crate::validate::MAX_FIELD_NAME_BYTES
                )));
            }
            let taken = std::iter::once(&self.partition)
                .chain(&self.sort)
                .chain(
                    self.indexes
                        .iter()
                        .flat_map(|i| std::iter::once(&i.partition).chain(&i.sort)),
                )
                .chain(self.uniques.iter().flat_map(|u| &u.components))
                .any(|key| key.field == *version)
                || self.ttl.as_deref() == Some(version.as_str());
            if taken {
                return Err(bad(format!(
                    "version attribute {version:?} is also a key, index or ttl field"
                )));
            }
        }
        if self.exact_name && !self.uniques.is_empty() {
            return Err(bad(format!(
                "table {:?} is exact-named and has a unique index: stores with different \
                 prefixes share it, and would each keep its unique values alone",
                self.name
            )));
        }
        if self.indexes.len() > MAX_INDEXES {
            return Err(bad(format!(
                "{} query indexes, over the limit of {MAX_INDEXES}",
                self.indexes.len()
            )));
        }
        if self.uniques.len() > MAX_UNIQUE_INDEXES {
            return Err(bad(format!(
                "{} unique indexes, over the limit of {MAX_UNIQUE_INDEXES}",
                self.uniques.len()
            )));
        }
        let mut names = HashMap::new();
        for name in self
            .indexes
            .iter()
            .map(QueryIndex::name)
            .chain(self.uniques.iter().map(UniqueIndex::name))
        {
            check_name("index name", name)?;
            // SQLite's names ignore ASCII case, so two names that differ only there are one.
            if names.insert(name.to_ascii_lowercase(), ()).is_some() {
                return Err(bad(format!(
                    "two indexes are named {name:?} (ignoring case)"
                )));
            }
        }
        for index in &self.indexes {
            if index
                .sort
                .as_ref()
                .is_some_and(|s| s.field == index.partition.field)
            {
                return Err(bad(format!(
                    "index {:?} sorts by its partition key",
                    index.name
                )));
            }
        }
        if self
            .sort
            .as_ref()
            .is_some_and(|s| s.field == self.partition.field)
        {
            return Err(bad("the table's sort key is its partition key".to_owned()));
        }
        for unique in &self.uniques {
            let n = unique.components.len();
            if !(1..=MAX_UNIQUE_COMPONENTS).contains(&n) {
                return Err(bad(format!(
                    "unique index {:?} has {n} components, not 1 to {MAX_UNIQUE_COMPONENTS}",
                    unique.name
                )));
            }
            let mut fields: Vec<_> = unique.components.iter().map(KeyDef::field).collect();
            fields.sort_unstable();
            if fields.windows(2).any(|w| w[0] == w[1]) {
                return Err(bad(format!(
                    "unique index {:?} names a field twice",
                    unique.name
                )));
            }
        }
        let keys = std::iter::once(&self.partition)
            .chain(&self.sort)
            .chain(
                self.indexes
                    .iter()
                    .flat_map(|i| std::iter::once(&i.partition).chain(&i.sort)),
            )
            .chain(self.uniques.iter().flat_map(|u| &u.components));
        let mut key_fields: Vec<(String, KeyType)> = Vec::new();
        let mut computed: Vec<KeyDef> = Vec::new();
        for key in keys {
            check_field(&key.field)?;
            match key_fields.iter().find(|(field, _)| *field == key.field) {
                None => key_fields.push((key.field.clone(), key.kind)),
                Some(&(_, kind)) if kind != key.kind => {
                    return Err(bad(format!(
                        "field {:?} is declared as both {kind} and {}",
                        key.field, key.kind
                    )));
                }
                _ => {}
            }
            if key.compute.is_some() {
                if computed.iter().any(|c| c.field == key.field) {
                    return Err(bad(format!("field {:?} is computed twice", key.field)));
                }
                computed.push(key.clone());
            }
        }
        if let Some(ttl) = &self.ttl {
            check_field(ttl)?;
            // Conditions name it as a path, and the records' expiry is a top-level field.
            if ttl.contains(['.', '[', ']', '"']) {
                return Err(bad(format!(
                    "the ttl field {ttl:?} must be a top-level name without `.`, `[`, `]` or `\"`"
                )));
            }
            if let Some((_, kind)) = key_fields.iter().find(|(field, _)| field == ttl) {
                // A key is never removed or changed by a patch the way an expiry is, and a
                // text key could not hold a number at all.
                return Err(bad(format!(
                    "the ttl field {ttl:?} is also a key field ({kind})"
                )));
            }
        }
        check_projections(
            &self.indexes,
            &self.partition,
            self.sort.as_ref(),
            &self.ttl,
        )?;
        check_billing(&self.billing, &self.indexes)?;
        check_tags(&self.tags)?;
        Ok(TableSchema(Arc::new(Inner {
            name: self.name,
            partition: self.partition,
            sort: self.sort,
            indexes: self.indexes,
            uniques: self.uniques,
            computed,
            key_fields,
            ttl: self.ttl,
            exact_name: self.exact_name,
            billing: self.billing,
            tags: self.tags,
            // The default named explicitly is the default: one shape, one catalog entry.
            version_attribute: self
                .version_attribute
                .filter(|v| v != DEFAULT_VERSION_ATTRIBUTE),
        })))
    }
}

/// Each partial projection names top-level fields that are not keys of the table or the
/// index (those are always held), in DynamoDB's limits; on a table whose records expire, it
/// holds the ttl field, so an index read can leave expired records out as every read does.
fn check_projections(
    indexes: &[QueryIndex],
    partition: &KeyDef,
    sort: Option<&KeyDef>,
    ttl: &Option<String>,
) -> Result<()> {
    let mut included = 0;
    for index in indexes {
        let keys: Vec<&str> = [Some(partition), sort, Some(&index.partition)]
            .into_iter()
            .chain([index.sort.as_ref()])
            .flatten()
            .map(KeyDef::field)
            .collect();
        if let IndexProjection::Include(fields) = &index.projection {
            if fields.is_empty() {
                return Err(bad(format!(
                    "index {:?} includes no field: declare it KEYS_ONLY",
                    index.name
                )));
            }
            for field in fields {
                check_field(field)?;
                if keys.contains(&field.as_str()) {
                    return Err(bad(format!(
                        "index {:?} includes the key field {field:?}, which every index holds",
                        index.name
                    )));
                }
            }
            included += fields.len();
        }
        if let Some(ttl) = ttl
            && !index.projection.is_all()
            && !index.projection.included().contains(ttl)
        {
            return Err(bad(format!(
                "index {:?} projects {} without the ttl field {ttl:?}: include it, so that a \
                 query on the index can leave expired records out",
                index.name, index.projection
            )));
        }
    }
    if included > MAX_INCLUDED_FIELDS {
        return Err(bad(format!(
            "the indexes include {included} fields, over DynamoDB's limit of \
             {MAX_INCLUDED_FIELDS} per table"
        )));
    }
    Ok(())
}

/// Capacities are 1 or more (and fit DynamoDB's 64-bit signed integers); an index declares
/// its own only on a provisioned table.
fn check_billing(billing: &Billing, indexes: &[QueryIndex]) -> Result<()> {
    let check = |what: String, t: &Throughput| {
        if t.read == 0 || t.write == 0 || t.read > i64::MAX as u64 || t.write > i64::MAX as u64 {
            return Err(bad(format!(
                "{what} throughput of {t}: each must be 1 to {}",
                i64::MAX
            )));
        }
        Ok(())
    };
    if let Billing::Provisioned(throughput) = billing {
        check("the table's".to_owned(), throughput)?;
    }
    for index in indexes {
        match (&index.throughput, billing) {
            (Some(_), Billing::OnDemand) => {
                return Err(bad(format!(
                    "index {:?} declares a throughput on a table billed on demand: declare \
                     the table's billing Provisioned",
                    index.name
                )));
            }
            (Some(throughput), Billing::Provisioned(_)) => {
                check(format!("index {:?}'s", index.name), throughput)?;
            }
            (None, _) => {}
        }
    }
    Ok(())
}

/// DynamoDB's rules for tags, on every backend, so a schema valid on one is valid on all.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(bad(format!(
            "{} tags, over the limit of {MAX_TAGS}",
            tags.len()
        )));
    }
    for (key, value) in tags {
        let length = key.chars().count();
        if !(1..=128).contains(&length) || key.starts_with("aws:") {
            return Err(bad(format!(
                "tag key {key:?} must be 1 to 128 characters, not starting with \"aws:\""
            )));
        }
        if value.chars().count() > 256 {
            return Err(bad(format!(
                "the value of tag {key:?} is over 256 characters"
            )));
        }
    }
    Ok(())
}

fn bad(why: String) -> Error {
    Error::invalid("schema", why)
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let (shortest, longest) = NAME_LENGTH;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !(shortest..=longest).contains(&name.len()) || !name.chars().all(allowed) {
        return Err(bad(format!(
            "{what} {name:?} must be {shortest} to {longest} of the characters a-z, A-Z, 0-9, _, - and ."
        )));
    }
    Ok(())
}

fn check_field(field: &str) -> Result<()> {
    // DynamoDB's limit for a key attribute's name.
    if field.is_empty() || field.len() > 255 || field.contains('\0') {
        return Err(bad(format!(
            "key field {field:?} must be 1 to 255 bytes without NUL"
        )));
    }
    if field.starts_with(RESERVED_FIELD_PREFIX) {
        return Err(bad(format!(
            "key field {field:?} starts with the reserved {RESERVED_FIELD_PREFIX:?}"
        )));
    }
    Ok(())
}

impl TableSchema {
    /// Starts a schema: the table's name and its partition key.
    pub fn builder(name: impl Into<String>, partition: KeyDef) -> TableSchemaBuilder {
        TableSchemaBuilder {
            name: name.into(),
            partition,
            sort: None,
            indexes: Vec::new(),
            uniques: Vec::new(),
            ttl: None,
            exact_name: false,
            billing: Billing::OnDemand,
            tags: BTreeMap::new(),
            version_attribute: None,
        }
    }

    /// The attribute a record's version is kept in on DynamoDB
    /// ([`TableSchemaBuilder::version_attribute`]; [`DEFAULT_VERSION_ATTRIBUTE`] unless
    /// named), and the document field no record may hold.
    #[must_use]
    pub fn version_attribute(&self) -> &str {
        self.0
            .version_attribute
            .as_deref()
            .unwrap_or(DEFAULT_VERSION_ATTRIBUTE)
    }

    /// Refuses a path whose top-level field is the schema's own version attribute (a named
    /// one: the default is refused as storekit's reserved prefix already): `what` names the
    /// input (`"condition"`, `"projection"`, `"patch"`).
    pub(crate) fn check_not_version(&self, what: &'static str, field: &str) -> Result<()> {
        match &self.0.version_attribute {
            Some(version) if version == field => Err(Error::invalid(
                what,
                format!("{field:?} is the table's version attribute, not a document field"),
            )),
            _ => Ok(()),
        }
    }

    /// How the table's capacity is paid for ([`TableSchemaBuilder::billing`]).
    #[must_use]
    pub fn billing(&self) -> Billing {
        self.0.billing
    }

    /// The table's tags ([`TableSchemaBuilder::tag`]).
    #[must_use]
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.0.tags
    }

    /// The capacity the query index at `position` gets: its own, or the table's, on a
    /// provisioned table; `None` on an on-demand one.
    #[must_use]
    pub fn index_throughput(&self, position: usize) -> Option<Throughput> {
        match self.0.billing {
            Billing::OnDemand => None,
            Billing::Provisioned(table) => Some(
                self.0
                    .indexes
                    .get(position)
                    .and_then(|i| i.throughput)
                    .unwrap_or(table),
            ),
        }
    }

    /// The top-level fields the query index at `position` holds of each record when it is
    /// partial ([`IndexProjection`]): the table's key fields, the index's and the included
    /// ones. `None` when it holds whole records (or there is no such index).
    #[must_use]
    pub fn index_fields(&self, position: usize) -> Option<Vec<&str>> {
        let index = self.0.indexes.get(position)?;
        if index.projection.is_all() {
            return None;
        }
        let mut fields: Vec<&str> = Vec::new();
        for field in [Some(&self.0.partition), self.0.sort.as_ref()]
            .into_iter()
            .chain([Some(&index.partition), index.sort.as_ref()])
            .flatten()
            .map(KeyDef::field)
            .chain(index.projection.included().iter().map(String::as_str))
        {
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        Some(fields)
    }

    /// Whether the table is named without the store's prefix
    /// ([`TableSchemaBuilder::exact_name`]).
    #[must_use]
    pub fn is_exact_name(&self) -> bool {
        self.0.exact_name
    }

    /// The table's name in a store whose prefix is `prefix`: `{prefix}{name}`, or the name
    /// alone for an exact-named table.
    #[must_use]
    pub fn stored_name(&self, prefix: &str) -> String {
        if self.0.exact_name {
            self.0.name.clone()
        } else {
            format!("{prefix}{}", self.0.name)
        }
    }

    /// Checks that the table's name in a store with `prefix` ([`TableSchema::stored_name`])
    /// fits [`MAX_PREFIXED_NAME`]: [`Error::InvalidInput`] (`"table name"`) otherwise. An
    /// exact-named table takes no prefix, so it always fits.
    pub fn check_stored_name(&self, prefix: &str) -> Result<()> {
        check_prefixed_name(if self.0.exact_name { "" } else { prefix }, self.name())
    }

    /// The top-level field holding a record's expiry in Unix seconds, if records expire
    /// ([`TableSchemaBuilder::ttl`]).
    #[must_use]
    pub fn ttl(&self) -> Option<&str> {
        self.0.ttl.as_deref()
    }

    /// Whether `document` has expired at `now` (Unix seconds): its ttl field is a number at
    /// or before `now`. Always `false` for a table without a ttl.
    #[must_use]
    pub fn is_expired(&self, document: &Document, now: f64) -> bool {
        self.ttl()
            .and_then(|field| document.get(field))
            .and_then(serde_json::Value::as_f64)
            .is_some_and(|at| at <= now)
    }

    /// The condition a record must meet to be alive at `now` (Unix seconds), in the expression
    /// language every backend renders: not (ttl <= now). A missing field or one of another
    /// type compares false, so such a record never expires, as in
    /// [`TableSchema::is_expired`] and DynamoDB. `None` for a table without a ttl.
    #[must_use]
    pub fn live_condition(&self, now: f64) -> Option<super::Condition> {
        let field = self.ttl()?;
        Some(super::Condition::not(super::Condition::le(
            super::Path::from(field),
            serde_json::json!(now),
        )))
    }

    /// The table's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The table's partition key.
    #[must_use]
    pub fn partition(&self) -> &KeyDef {
        &self.0.partition
    }

    /// The table's sort key, if any.
    #[must_use]
    pub fn sort(&self) -> Option<&KeyDef> {
        self.0.sort.as_ref()
    }

    /// The query indexes, in declaration order.
    #[must_use]
    pub fn indexes(&self) -> &[QueryIndex] {
        &self.0.indexes
    }

    /// The unique indexes, in declaration order.
    #[must_use]
    pub fn uniques(&self) -> &[UniqueIndex] {
        &self.0.uniques
    }

    /// The position of the query index `name`.
    pub fn index_position(&self, name: &str) -> Result<usize> {
        self.0
            .indexes
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| {
                Error::invalid(
                    "index",
                    format!("table {:?} has no query index {name:?}", self.name()),
                )
            })
    }

    /// The position of the unique index `name`.
    pub fn unique_position(&self, name: &str) -> Result<usize> {
        self.0
            .uniques
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| {
                Error::invalid(
                    "index",
                    format!("table {:?} has no unique index {name:?}", self.name()),
                )
            })
    }

    /// Every distinct key field with its type: what a DynamoDB table declares as attribute
    /// definitions, and what SQL stores in typed columns.
    #[must_use]
    pub fn key_fields(&self) -> Vec<(&str, KeyType)> {
        self.0
            .key_fields
            .iter()
            .map(|(field, kind)| (field.as_str(), *kind))
            .collect()
    }

    /// Whether some key is computed from the record ([`KeyDef::computed`]): a change to any
    /// field may then change a key, which only a read of the whole record can tell.
    #[must_use]
    pub fn has_computed_keys(&self) -> bool {
        !self.0.computed.is_empty()
    }

    /// Checks a record and brings it to the form every backend stores and reads back alike
    /// (see [`document::canonicalize`]), with its computed keys written, then reads its keys.
    pub fn row(&self, mut document: Document) -> Result<Row> {
        if let Some(version) = &self.0.version_attribute
            && document.contains_key(version)
        {
            return Err(Error::invalid(
                "document",
                format!(
                    "field {version:?} is the table's version attribute: storekit keeps the \
                     version there itself"
                ),
            ));
        }
        for key in &self.0.computed {
            match (key.compute.as_ref().and_then(|f| f(&document)), key.kind) {
                (Some(value), kind) if value.key_type() == kind => {
                    document.insert(key.field.clone(), value.to_json());
                }
                (Some(value), kind) => {
                    return Err(Error::invalid(
                        "document",
                        format!(
                            "computed key {:?} is {}, declared {kind}",
                            key.field,
                            value.key_type()
                        ),
                    ));
                }
                (None, _) => {
                    document.remove(&key.field);
                }
            }
        }
        // A `null` in an index key is an absent key: DynamoDB refuses a NULL there.
        for (field, _) in &self.0.key_fields {
            if document.get(field).is_some_and(serde_json::Value::is_null) {
                document.remove(field);
            }
        }
        document::canonicalize(&mut document)?;
        let key = self.key_with(&document, KeyDef::read)?;
        let indexes = self
            .0
            .indexes
            .iter()
            .map(|index| {
                let partition = index.partition.read(&document)?;
                let sort = index.sort.as_ref().map(|s| s.read(&document)).transpose()?;
                Ok(match (partition, sort) {
                    (Some(p), None) if index.sort.is_none() => Some(IndexEntry {
                        partition: p,
                        sort: None,
                    }),
                    (Some(p), Some(Some(s))) => Some(IndexEntry {
                        partition: p,
                        sort: Some(s),
                    }),
                    _ => None,
                })
            })
            .collect::<Result<_>>()?;
        let uniques = self
            .0
            .uniques
            .iter()
            .map(|unique| {
                let values = unique
                    .components
                    .iter()
                    .map(|c| c.read(&document))
                    .collect::<Result<Option<Vec<_>>>>()?;
                if let Some(values) = &values {
                    document::check_unique_size(&unique.name, values)?;
                }
                Ok(values)
            })
            .collect::<Result<_>>()?;
        Ok(Row {
            key,
            document,
            indexes,
            uniques,
        })
    }

    /// Reads a stored record's key. A float key that an older storekit stored as an integer no
    /// `f64` holds reads as the nearest float, as it was written (new writes refuse it).
    pub fn key_of(&self, document: &Document) -> Result<RecordKey> {
        self.key_with(document, KeyDef::read_stored)
    }

    fn key_with(
        &self,
        document: &Document,
        read: fn(&KeyDef, &Document) -> Result<Option<KeyValue>>,
    ) -> Result<RecordKey> {
        let missing =
            |field: &str| Error::invalid("document", format!("key field {field:?} is missing"));
        let partition =
            read(&self.0.partition, document)?.ok_or_else(|| missing(&self.0.partition.field))?;
        let sort = match &self.0.sort {
            Some(sort) => Some(read(sort, document)?.ok_or_else(|| missing(&sort.field))?),
            None => None,
        };
        Ok(RecordKey { partition, sort })
    }

    /// Checks that `key` has this table's key types.
    pub fn check_key(&self, key: &RecordKey) -> Result<()> {
        check_value(&self.0.partition, &key.partition)?;
        match (&self.0.sort, &key.sort) {
            (Some(def), Some(value)) => check_value(def, value),
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::invalid(
                "key",
                format!("table {:?} needs a sort key", self.name()),
            )),
            (None, Some(_)) => Err(Error::invalid(
                "key",
                format!("table {:?} has no sort key", self.name()),
            )),
        }
    }

    /// What the schema declares, in the form backends describe a live table.
    #[must_use]
    pub fn shape(&self) -> TableShape {
        TableShape {
            partition: self.0.partition.shape(),
            sort: self.0.sort.as_ref().map(KeyDef::shape),
            indexes: self.0.indexes.iter().map(QueryIndex::shape).collect(),
            uniques: self.0.uniques.iter().map(UniqueIndex::shape).collect(),
            ttl: self.0.ttl.clone(),
            exact_name: self.0.exact_name,
            billing: self.0.billing,
            tags: self.0.tags.clone(),
            version_attribute: self.0.version_attribute.clone(),
        }
    }

    /// The schema of a live table from its shape, as a backend's catalog records it: what
    /// `storekit copy` writes records through. It has no computed keys: their values are
    /// already in the stored records.
    pub fn from_shape(name: &str, shape: &TableShape) -> Result<TableSchema> {
        let def = |k: &KeyShape| KeyDef::new(k.field.clone(), k.kind);
        let mut builder = TableSchema::builder(name, def(&shape.partition));
        if let Some(sort) = &shape.sort {
            builder = builder.sort_key(def(sort));
        }
        for index in &shape.indexes {
            let mut declared = QueryIndex::new(
                index.name.clone(),
                def(&index.partition),
                index.sort.as_ref().map(def),
            )
            .projected(index.projection.clone());
            if let Some(throughput) = index.throughput {
                declared = declared.throughput(throughput);
            }
            builder = builder.query_index(declared);
        }
        builder = builder.billing(shape.billing);
        for (key, value) in &shape.tags {
            builder = builder.tag(key.clone(), value.clone());
        }
        for unique in &shape.uniques {
            builder = builder.unique(unique.name.clone(), unique.components.iter().map(def));
        }
        if let Some(ttl) = &shape.ttl {
            builder = builder.ttl(ttl.clone());
        }
        if shape.exact_name {
            builder = builder.exact_name();
        }
        if let Some(version) = &shape.version_attribute {
            builder = builder.version_attribute(version.clone());
        }
        builder.build()
    }
}

/// Checks a key value against its declaration.
pub(crate) fn check_value(def: &KeyDef, value: &KeyValue) -> Result<()> {
    if value.key_type() != def.kind {
        return Err(Error::invalid(
            "key",
            format!(
                "{:?} is a key of type {}, not {}",
                def.field,
                def.kind,
                value.key_type()
            ),
        ));
    }
    value.check(&def.field)
}

/// A record's key in one query index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The index partition key.
    pub partition: KeyValue,
    /// The index sort key, when the index has one.
    pub sort: Option<KeyValue>,
}

/// A checked record about to be written: its canonical document with computed keys, and every
/// key read from it. Only [`TableSchema::row`] builds one.
#[derive(Debug, Clone)]
pub struct Row {
    key: RecordKey,
    document: Document,
    indexes: Vec<Option<IndexEntry>>,
    uniques: Vec<Option<Vec<KeyValue>>>,
}

impl Row {
    /// The record's key.
    #[must_use]
    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    /// The canonical document, computed keys included.
    #[must_use]
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The record's entry in each query index, in the schema's order; `None` where the record
    /// lacks a key of that index (a sparse index).
    #[must_use]
    pub fn indexes(&self) -> &[Option<IndexEntry>] {
        &self.indexes
    }

    /// The record's values in each unique index, in the schema's order; `None` where it lacks
    /// a component.
    #[must_use]
    pub fn uniques(&self) -> &[Option<Vec<KeyValue>>] {
        &self.uniques
    }

    /// The document, taken.
    #[must_use]
    pub fn into_document(self) -> Document {
        self.document
    }
}

/// A key attribute as a live table or a schema has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShape {
    /// The field.
    pub field: String,
    /// Its type.
    pub kind: KeyType,
}

/// A query index as a live table or a schema has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexShape {
    /// Its name.
    pub name: String,
    /// Its partition key.
    pub partition: KeyShape,
    /// Its sort key.
    pub sort: Option<KeyShape>,
    /// What it holds of each record; catalogs written before projections read as `All`.
    #[serde(default, skip_serializing_if = "IndexProjection::is_all")]
    pub projection: IndexProjection,
    /// Its own capacity: on a live DynamoDB table, what it is provisioned at; in a schema's
    /// shape, what the index declares (`None`: the table's, or on demand). Not a difference
    /// [`TableShape::compare`] reports (see there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
}

/// A unique index as a live table or a schema has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueShape {
    /// Its name.
    pub name: String,
    /// Its components.
    pub components: Vec<KeyShape>,
}

/// What a table is, without its records: what a backend reads back from the database to
/// compare with a schema in [`TableStore::ensure_table`](super::TableStore::ensure_table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    /// The partition key.
    pub partition: KeyShape,
    /// The sort key.
    pub sort: Option<KeyShape>,
    /// The query indexes.
    pub indexes: Vec<IndexShape>,
    /// The unique indexes.
    pub uniques: Vec<UniqueShape>,
    /// The field records expire by ([`TableSchemaBuilder::ttl`]), if any. Catalogs written
    /// before TTLs existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Whether the table is named without the store's prefix
    /// ([`TableSchemaBuilder::exact_name`]); catalogs written before read as `false`. Not a
    /// difference [`TableShape::compare`] reports: the name a store found the table by
    /// already says it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact_name: bool,
    /// How the table is billed ([`TableSchemaBuilder::billing`]); catalogs written before
    /// read as on demand. Not a difference [`TableShape::compare`] reports (see there).
    #[serde(default, skip_serializing_if = "Billing::is_on_demand")]
    pub billing: Billing,
    /// The table's tags ([`TableSchemaBuilder::tag`]). Not a difference
    /// [`TableShape::compare`] reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The attribute versions are kept in ([`TableSchemaBuilder::version_attribute`]), when
    /// not [`DEFAULT_VERSION_ATTRIBUTE`]; catalogs written before read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_attribute: Option<String>,
}

/// The indexes a schema declares that a live table lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingIndexes {
    /// Positions of missing query indexes in the schema.
    pub indexes: Vec<usize>,
    /// Positions of missing unique indexes in the schema.
    pub uniques: Vec<usize>,
}

impl MissingIndexes {
    /// Whether nothing is missing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty() && self.uniques.is_empty()
    }
}

impl TableShape {
    /// The query indexes of the live table (`self`) that `schema` does not declare, by name:
    /// another client's global secondary index on an adopted table, or one an earlier
    /// version of the schema declared. [`TableStore::ensure_table`](super::TableStore::ensure_table)
    /// leaves them alone and lists them in its [`TableStatus`](super::TableStatus).
    #[must_use]
    pub fn undeclared_indexes(&self, schema: &TableSchema) -> Vec<String> {
        self.indexes
            .iter()
            .filter(|live| !schema.indexes().iter().any(|i| i.name() == live.name))
            .map(|live| live.name.clone())
            .collect()
    }

    /// Compares a live table (`self`) with what `schema` declares: the indexes to add, or
    /// [`Error::SchemaMismatch`] listing every difference that adding indexes cannot mend:
    /// keys, the keys and projection of each declared query index, unique indexes, TTL and
    /// naming. Query indexes the schema does not declare are not differences
    /// ([`TableShape::undeclared_indexes`]). Billing, throughput and tags are not compared
    /// here: only DynamoDB has them, and it compares them itself (SQL and memory ignore them).
    pub fn compare(&self, schema: &TableSchema) -> Result<MissingIndexes> {
        let declared = schema.shape();
        let mut differences = Vec::new();
        let describe = |k: &KeyShape| format!("{} {}", k.field, k.kind);
        let describe_opt = |k: &Option<KeyShape>| k.as_ref().map_or("none".to_owned(), describe);
        if self.partition != declared.partition {
            differences.push(format!(
                "partition key is {}, declared {}",
                describe(&self.partition),
                describe(&declared.partition)
            ));
        }
        if self.sort != declared.sort {
            differences.push(format!(
                "sort key is {}, declared {}",
                describe_opt(&self.sort),
                describe_opt(&declared.sort)
            ));
        }
        if self.exact_name != declared.exact_name {
            // One name is one table in a store: its catalog entry says which.
            let named = |exact: bool| {
                if exact {
                    "exactly"
                } else {
                    "with the store's prefix"
                }
            };
            differences.push(format!(
                "the table is named {}, declared {}",
                named(self.exact_name),
                named(declared.exact_name)
            ));
        }
        let mut missing = MissingIndexes::default();
        for (position, index) in declared.indexes.iter().enumerate() {
            match self.indexes.iter().find(|live| live.name == index.name) {
                None => missing.indexes.push(position),
                Some(live) => {
                    if (&live.partition, &live.sort) != (&index.partition, &index.sort) {
                        differences.push(format!(
                            "index {:?} is on ({}, {}), declared ({}, {})",
                            index.name,
                            describe(&live.partition),
                            describe_opt(&live.sort),
                            describe(&index.partition),
                            describe_opt(&index.sort)
                        ));
                    }
                    if live.projection != index.projection {
                        differences.push(format!(
                            "index {:?} projects {}, declared {}",
                            index.name, live.projection, index.projection
                        ));
                    }
                }
            }
        }
        for (position, unique) in declared.uniques.iter().enumerate() {
            match self.uniques.iter().find(|live| live.name == unique.name) {
                None => missing.uniques.push(position),
                Some(live) if live != unique => differences.push(format!(
                    "unique index {:?} is on ({}), declared ({})",
                    unique.name,
                    live.components
                        .iter()
                        .map(describe)
                        .collect::<Vec<_>>()
                        .join(", "),
                    unique
                        .components
                        .iter()
                        .map(describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(_) => {}
            }
        }
        for live in &self.uniques {
            if !declared.uniques.iter().any(|u| u.name == live.name) {
                differences.push(format!("unique index {:?} is not declared", live.name));
            }
        }
        if self.ttl != declared.ttl {
            differences.push(format!(
                "records expire by {}, declared {}",
                self.ttl
                    .as_deref()
                    .map_or("nothing".to_owned(), |f| format!("{f:?}")),
                declared
                    .ttl
                    .as_deref()
                    .map_or("nothing".to_owned(), |f| format!("{f:?}"))
            ));
        }
        if self.version_attribute != declared.version_attribute {
            let name = |v: &Option<String>| {
                format!("{:?}", v.as_deref().unwrap_or(DEFAULT_VERSION_ATTRIBUTE))
            };
            differences.push(format!(
                "versions are kept in {}, declared {}",
                name(&self.version_attribute),
                name(&declared.version_attribute)
            ));
        }
        if differences.is_empty() {
            Ok(missing)
        } else {
            Err(Error::SchemaMismatch {
                table: schema.name().to_owned(),
                differences,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn products() -> TableSchema {
        TableSchema::builder("products", KeyDef::text("id"))
            .index(
                "product-name-index",
                KeyDef::text("name"),
                Some(KeyDef::float("updated_at")),
            )
            .unique(
                "folded-name",
                [KeyDef::text("name_folded")
                    .computed(|doc| Some(doc.get("name")?.as_str()?.to_lowercase().into()))],
            )
            .build()
            .expect("valid")
    }

    fn doc(value: serde_json::Value) -> Document {
        match value {
            serde_json::Value::Object(map) => map,
            _ => Document::new(),
        }
    }

    #[test]
    fn a_row_has_its_computed_keys_and_index_entries() {
        let row = products()
            .row(doc(json!({"id": "a", "name": "Ünï", "updated_at": 2.0})))
            .expect("valid");
        assert_eq!(row.document()["name_folded"], json!("ünï"));
        assert_eq!(row.document()["updated_at"], json!(2));
        assert_eq!(
            row.indexes()[0].as_ref().map(|e| e.sort.clone()),
            Some(Some(KeyValue::Float(2.0)))
        );
        assert_eq!(row.uniques()[0], Some(vec![KeyValue::from("ünï")]));
        let sparse = products()
            .row(doc(json!({"id": "b", "name": null})))
            .expect("valid");
        assert!(!sparse.document().contains_key("name"));
        assert_eq!(sparse.indexes()[0], None);
        assert_eq!(sparse.uniques()[0], None);
    }

    #[test]
    fn rules_of_the_strictest_backend_are_checked_when_built() {
        let refused = |b: TableSchemaBuilder| {
            matches!(b.build(), Err(Error::InvalidInput { what: "schema", .. }))
        };
        assert!(refused(TableSchema::builder("ab", KeyDef::text("id"))));
        assert!(refused(TableSchema::builder("a b c", KeyDef::text("id"))));
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id")).index("ix1", KeyDef::int("id"), None)
        ));
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id")).unique("u1", [])
        ));
        assert!(refused(TableSchema::builder(
            "t_1",
            KeyDef::text("_storekit_version")
        )));
        assert!(refused(TableSchema::builder("Users", KeyDef::text("id"))));
        assert!(refused(TableSchema::builder(
            "SQLite_x",
            KeyDef::text("id")
        )));
        assert!(
            TableSchema::builder("my_sqlite_x", KeyDef::text("id"))
                .build()
                .is_ok()
        );
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id"))
                .index("by-a", KeyDef::text("a"), None)
                .index("BY-A", KeyDef::text("b"), None)
        ));
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id"))
                .index("same", KeyDef::text("a"), None)
                .unique("same", [KeyDef::text("b")])
        ));
        let mut many = TableSchema::builder("t_1", KeyDef::text("id"));
        for i in 0..=MAX_INDEXES {
            many = many.index(format!("ix{i}"), KeyDef::text("a"), None);
        }
        assert!(refused(many));
    }

    #[test]
    fn a_ttl_is_a_top_level_field_that_expires_records_at_or_before_now() {
        let schema = TableSchema::builder("sessions", KeyDef::text("id"))
            .ttl("expires_at")
            .build()
            .expect("valid");
        let at = |value: serde_json::Value| doc(json!({"id": "a", "expires_at": value}));
        assert!(schema.is_expired(&at(json!(100)), 100.0));
        assert!(schema.is_expired(&at(json!(99.5)), 100.0));
        assert!(!schema.is_expired(&at(json!(100.5)), 100.0));
        assert!(
            !schema.is_expired(&at(json!("100")), 1e12),
            "not a number: never"
        );
        assert!(
            !schema.is_expired(&doc(json!({"id": "a"})), 1e12),
            "absent: never"
        );
        let live = schema.live_condition(100.0).expect("a condition");
        assert!(live.matches(&at(json!(101)), &[]));
        assert!(!live.matches(&at(json!(100)), &[]));
        assert!(live.matches(&doc(json!({"id": "a"})), &[]));
        assert_eq!(products().live_condition(100.0), None);
        let refused = |b: TableSchemaBuilder| {
            matches!(b.build(), Err(Error::InvalidInput { what: "schema", .. }))
        };
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::int("id")).ttl("id")
        ));
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id")).ttl("a.b")
        ));
        assert!(refused(
            TableSchema::builder("t_1", KeyDef::text("id")).ttl("")
        ));
        let mut live_shape = schema.shape();
        live_shape.ttl = None;
        let Err(Error::SchemaMismatch { differences, .. }) = live_shape.compare(&schema) else {
            panic!("a table without the declared ttl is a mismatch");
        };
        assert_eq!(
            differences,
            ["records expire by nothing, declared \"expires_at\""]
        );
        assert_eq!(
            TableSchema::from_shape("sessions", &schema.shape())
                .expect("valid")
                .ttl(),
            Some("expires_at")
        );
    }

    #[test]
    fn projections_billing_and_tags_are_checked_when_built() {
        let refused = |b: TableSchemaBuilder| {
            matches!(b.build(), Err(Error::InvalidInput { what: "schema", .. }))
        };
        let on_name = || QueryIndex::new("by-name", KeyDef::text("name"), None);
        let table = || TableSchema::builder("t_1", KeyDef::text("id"));
        assert!(refused(table().query_index(on_name().include(["id"]))));
        assert!(refused(table().query_index(on_name().include(["name"]))));
        assert!(refused(
            table().query_index(on_name().include(Vec::<String>::new()))
        ));
        assert!(refused(
            table().query_index(on_name().include(["_storekit_version"]))
        ));
        assert!(refused(
            table().ttl("exp").query_index(on_name().keys_only())
        ));
        assert!(
            table()
                .ttl("exp")
                .query_index(on_name().include(["exp"]))
                .build()
                .is_ok()
        );
        assert!(refused(
            table().query_index(on_name().throughput(Throughput::new(1, 1)))
        ));
        assert!(refused(
            table().billing(Billing::Provisioned(Throughput::new(0, 1)))
        ));
        assert!(refused(
            table()
                .billing(Billing::Provisioned(Throughput::new(1, 1)))
                .query_index(on_name().throughput(Throughput::new(1, 0)))
        ));
        assert!(refused(table().tag("aws:owner", "x")));
        assert!(refused(table().tag("", "x")));
        assert!(refused(table().tag("k", "v".repeat(257))));
        let mut many = table();
        for n in 0..=MAX_TAGS {
            many = many.tag(format!("k{n}"), "v");
        }
        assert!(refused(many));
        let wide: Vec<String> = (0..=MAX_INCLUDED_FIELDS).map(|n| format!("f{n}")).collect();
        assert!(refused(table().query_index(on_name().include(wide))));
    }

    #[test]
    fn a_partial_index_holds_the_keys_and_its_fields() {
        let schema = TableSchema::builder("t_1", KeyDef::text("id"))
            .sort_key(KeyDef::int("n"))
            .query_index(
                QueryIndex::new("by-name", KeyDef::text("name"), Some(KeyDef::int("at")))
                    .include(["price", "color"]),
            )
            .index("all", KeyDef::text("name"), None)
            .billing(Billing::Provisioned(Throughput::new(4, 2)))
            .tag("team", "shop")
            .build()
            .expect("valid");
        assert_eq!(
            schema.index_fields(0),
            Some(vec!["id", "n", "name", "at", "color", "price"])
        );
        assert_eq!(schema.index_fields(1), None);
        assert_eq!(schema.index_throughput(1), Some(Throughput::new(4, 2)));
        // The catalog's shape gives the same schema back.
        let again = TableSchema::from_shape("t_1", &schema.shape()).expect("valid");
        assert_eq!(again.shape(), schema.shape());
        assert_eq!(again.tags()["team"], "shop");
        // A shape with nothing new is written as before projections, billing and tags, so
        // catalogs stay as they were, and old catalogs read as ALL and on demand.
        let plain = TableSchema::builder("t_2", KeyDef::text("id"))
            .index("ix1", KeyDef::text("a"), None)
            .build()
            .expect("valid");
        let text = serde_json::to_string(&plain.shape()).expect("json");
        for new in ["projection", "throughput", "billing", "tags"] {
            assert!(!text.contains(new), "{text}");
        }
        let old: TableShape = serde_json::from_str(&text).expect("an old catalog");
        assert_eq!(old.indexes[0].projection, IndexProjection::All);
        assert_eq!(old.billing, Billing::OnDemand);
    }

    #[test]
    fn undeclared_indexes_are_listed_and_projections_compared() {
        let schema = products();
        let mut live = schema.shape();
        live.indexes.push(IndexShape {
            name: "another-team-index".to_owned(),
            partition: KeyShape {
                field: "color".to_owned(),
                kind: KeyType::Text,
            },
            sort: None,
            projection: IndexProjection::KeysOnly,
            throughput: None,
        });
        assert_eq!(live.compare(&schema).ok(), Some(MissingIndexes::default()));
        assert_eq!(live.undeclared_indexes(&schema), ["another-team-index"]);
        live.indexes[0].projection = IndexProjection::include(["price"]);
        // Billing and throughput are the backend's to compare.
        live.billing = Billing::Provisioned(Throughput::new(1, 1));
        live.indexes[0].throughput = Some(Throughput::new(1, 1));
        let Err(Error::SchemaMismatch { differences, .. }) = live.compare(&schema) else {
            panic!("another projection is a mismatch");
        };
        assert_eq!(
            differences,
            ["index \"product-name-index\" projects INCLUDE(price), declared ALL"]
        );
    }

    #[test]
    fn a_live_table_is_compared_with_its_schema() {
        let schema = products();
        let mut live = schema.shape();
        assert_eq!(live.compare(&schema).ok(), Some(MissingIndexes::default()));
        live.indexes.clear();
        assert_eq!(live.compare(&schema).ok().map(|m| m.indexes), Some(vec![0]));
        live.partition.kind = KeyType::Int;
        let Err(Error::SchemaMismatch { differences, .. }) = live.compare(&schema) else {
            panic!("a different key is a mismatch");
        };
        assert_eq!(differences, ["partition key is id int, declared id text"]);
    }
}
