//! What a backend implements: small traits whose arguments have already passed every rule.
//!
//! Callers use the public traits ([`KvStore`](crate::KvStore), [`UserStore`](crate::UserStore),
//! [`OAuthAccountStore`](crate::OAuthAccountStore), [`AccessTokenStore`](crate::AccessTokenStore)).
//! A backend implements the narrower traits here instead, and gets the public ones for free from
//! a blanket implementation (in the crate's layer modules) that, once for every backend:
//!
//! - checks namespaces, keys, values, emails, OAuth keys, page requests and id kinds, and
//!   computes expiry deadlines and email keys, before the backend sees a call;
//! - hashes access tokens and generates new ones, so a backend only ever stores hashes;
//! - opens a `tracing` span per call (see [`crate::trace`]) and adds the operation and what it
//!   was about to a failure's message.
//!
//! So a backend cannot forget a rule, and a rule changes in one place. The arguments are
//! newtypes that only this crate can build, which is what "already checked" means here.
//!
//! The store traits' docs hold complete backends that pass the conformance suite
//! (`examples/tiny_kv.rs` and `examples/tiny_auth.rs` of this crate): see
//! [`KvStore`](crate::KvStore) and [`UserStore`](crate::UserStore).

use std::fmt::Debug;
use std::ops::Deref;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::table::{
    Condition, Consistency, Document, Fetched, IndexQuery, KeyValue, MissingIndexes, Patch,
    Projection, Record, RecordKey, Returning, Row, StoredRecord, TableScan, TableSchema,
    TableShape,
};
use crate::{
    AccessToken, IdKind, OAuthAccount, OAuthAccountPatch, Page, Result, User, UserDraft, UserId,
    UserPatch,
};

/// What every backend tells about itself.
pub trait Backend: Debug + Send + Sync + 'static {
    /// The backend's one name, which users see: errors give it as their backend, spans carry
    /// it as `storekit.backend`, and the facade's `Stores::backend()` returns it: `sqlite`,
    /// `postgres`, `dynamodb`, or `memory` for the in-memory store.
    fn name(&self) -> &'static str;

    /// The database, as OpenTelemetry's `db.system.name` names it: `sqlite`, `postgresql`,
    /// `aws.dynamodb`, or `memory` for the in-memory store. It differs from [`Backend::name`]
    /// where the OpenTelemetry conventions fix another spelling; spans carry it as
    /// `db.system.name` and metrics as their `system` label.
    fn system(&self) -> &'static str;
}

/// Declares a `&str` newtype that only this crate builds, after checking it.
macro_rules! checked_str {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a>(&'a str);

        impl<'a> $name<'a> {
            /// The checked text.
            #[must_use]
            pub fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl Deref for $name<'_> {
            type Target = str;
            fn deref(&self) -> &str {
                self.0
            }
        }

        impl std::fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
    };
}

checked_str!(
    /// A key-value namespace that passed [`crate::validate::check_namespace`].
    Namespace
);
checked_str!(
    /// A key that passed [`crate::validate::check_key`].
    Key
);
checked_str!(
    /// A normalised email (see [`crate::normalize_email`]): what uniqueness and lookups use.
    EmailKey
);
checked_str!(
    /// The hash of an access token (see [`crate::token::hash`]), never the token itself.
    TokenHash
);

impl<'a> Namespace<'a> {
    pub(crate) fn checked(namespace: &'a str) -> Result<Self> {
        crate::validate::check_namespace(namespace)?;
        Ok(Self(namespace))
    }
}

impl<'a> Key<'a> {
    pub(crate) fn checked(key: &'a str) -> Result<Self> {
        crate::validate::check_key(key)?;
        Ok(Self(key))
    }
}

impl<'a> EmailKey<'a> {
    pub(crate) fn new(normalised: &'a str) -> Self {
        Self(normalised)
    }
}

impl<'a> TokenHash<'a> {
    pub(crate) fn new(hash: &'a str) -> Self {
        Self(hash)
    }
}

/// The keys of a batch, each checked; in the caller's order, repeats included.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a>(&'a [&'a str]);

impl<'a> Keys<'a> {
    pub(crate) fn checked(keys: &'a [&'a str]) -> Result<Self> {
        keys.iter()
            .try_for_each(|key| crate::validate::check_key(key))?;
        Ok(Self(keys))
    }

    /// The keys as a slice.
    #[must_use]
    pub fn as_slice(&self) -> &'a [&'a str] {
        self.0
    }
}

impl<'a> Deref for Keys<'a> {
    type Target = [&'a str];
    fn deref(&self) -> &[&'a str] {
        self.0
    }
}

/// The items of a batch write, each key and value checked; in the caller's order, so that the
/// last of a repeated key wins.
#[derive(Debug, Clone, Copy)]
pub struct Items<'a>(&'a [(&'a str, &'a [u8])]);

impl<'a> Items<'a> {
    pub(crate) fn checked(items: &'a [(&'a str, &'a [u8])]) -> Result<Self> {
        for (key, value) in items {
            crate::validate::check_key(key)?;
            crate::validate::check_value(value)?;
        }
        Ok(Self(items))
    }

    /// The items as a slice.
    #[must_use]
    pub fn as_slice(&self) -> &'a [(&'a str, &'a [u8])] {
        self.0
    }
}

impl<'a> Deref for Items<'a> {
    type Target = [(&'a str, &'a [u8])];
    fn deref(&self) -> &[(&'a str, &'a [u8])] {
        self.0
    }
}

/// When an item written now expires, computed once from the caller's TTL (see
/// [`crate::time::expiry_millis`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(Option<i64>);

impl Expiry {
    pub(crate) fn from_ttl(ttl: Option<Duration>) -> Result<Self> {
        crate::time::expiry_millis(ttl).map(Self)
    }

    /// The deadline in Unix milliseconds; `None` never expires.
    #[must_use]
    pub fn millis(self) -> Option<i64> {
        self.0
    }
}

/// An OAuth (provider, account id) pair that passed [`crate::check_oauth_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthKey<'a> {
    provider: &'a str,
    account_id: &'a str,
}

impl<'a> OAuthKey<'a> {
    pub(crate) fn checked(provider: &'a str, account_id: &'a str) -> Result<Self> {
        crate::check_oauth_key(provider, account_id)?;
        Ok(Self {
            provider,
            account_id,
        })
    }

    /// The provider, e.g. `github`.
    #[must_use]
    pub fn provider(&self) -> &'a str {
        self.provider
    }

    /// The account's id at the provider.
    #[must_use]
    pub fn account_id(&self) -> &'a str {
        self.account_id
    }
}

/// A checked page request for users: the limit within range, the cursor parsed as an id of the
/// store's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPageRequest {
    /// How many users at most (1 to [`crate::PageRequest::MAX_LIMIT`]).
    pub limit: usize,
    /// List users after this one (`None`: from the start).
    pub after: Option<UserId>,
}

/// The key-value store as a backend implements it; callers get [`crate::KvStore`] from it.
///
/// Each method is the [`crate::KvStore`] method of the same name, with its arguments checked
/// and its TTL turned into an [`Expiry`].
#[async_trait]
pub trait KvBackend: Backend {
    /// See [`crate::KvStore::get`].
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>>;

    /// See [`crate::KvStore::set`].
    async fn set(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()>;

    /// See [`crate::KvStore::set_json_encoded`]: `json` is checked as a value, and is what
    /// `serde_json` made of the caller's value (or any bytes, through the public method).
    ///
    /// The default stores the bytes as [`KvBackend::set`] does. A backend with a native
    /// document type may store a JSON document as one instead, as long as every read returns
    /// JSON that decodes to the same value and the write never fails where `set` of the same
    /// bytes would succeed (a value it cannot hold natively is stored as bytes).
    async fn set_json(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        json: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        self.set(namespace, key, json, expiry).await
    }

    /// See [`crate::KvStore::delete`].
    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool>;

    /// See [`crate::KvStore::contains`].
    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool>;

    /// See [`crate::KvStore::get_many`].
    async fn get_many(
        &self,
        namespace: Namespace<'_>,
        keys: Keys<'_>,
    ) -> Result<Vec<Option<Vec<u8>>>>;

    /// See [`crate::KvStore::set_many`].
    async fn set_many(
        &self,
        namespace: Namespace<'_>,
        items: Items<'_>,
        expiry: Expiry,
    ) -> Result<()>;

    /// See [`crate::KvStore::delete_many`].
    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()>;

    /// See [`crate::KvStore::keys`]: the stream owns what it needs (the prefix is checked).
    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>>;

    /// See [`crate::KvStore::clear`].
    async fn clear(&self, namespace: Namespace<'_>) -> Result<()>;

    /// See [`crate::KvStore::set_if_absent`]; also serves `compare_and_swap` with no expected
    /// value.
    async fn set_if_absent(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool>;

    /// See [`crate::KvStore::compare_and_swap`], with an expected value.
    async fn compare_and_swap(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool>;

    /// See [`crate::KvStore::increment`]; `expiry` applies only to a new counter.
    async fn increment(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64>;

    /// See [`crate::KvStore::purge_expired`]: deletes items whose deadline is at least
    /// [`KvBackend::keep_expired`] in the past.
    async fn purge_expired(&self) -> Result<u64>;

    /// See [`crate::KvStore::set_ttl`]: sets the deadline of the live item under `key`
    /// (`expiry` never expires: removes it), leaving its value; false, writing nothing, if no
    /// live item is there.
    async fn set_expiry(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expiry: Expiry,
    ) -> Result<bool>;

    /// The item under `key` as stored, with its deadline in Unix milliseconds, whether or not
    /// it has expired (the layer decides what to return): serves
    /// [`crate::KvStore::get_with_ttl`] and [`crate::KvStore::get_stale`]. One read, as
    /// consistent as `get`.
    async fn get_stored(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>>;

    /// See [`crate::KvStore::keep_expired`]; a backend that keeps it must not delete an item
    /// before its deadline plus this.
    fn keep_expired(&self) -> Duration {
        Duration::ZERO
    }
}

/// Users as a backend implements them; callers get [`crate::UserStore`] from it.
///
/// Ids passed in are of the store's kind, and patches have passed their field rules.
#[async_trait]
pub trait UserBackend: Backend {
    /// See [`crate::UserStore::id_kind`].
    fn id_kind(&self) -> IdKind;

    /// Stores a validated user, unique on [`UserDraft::email_key`], giving it an id.
    async fn create_user(&self, user: UserDraft) -> Result<User>;

    /// See [`crate::UserStore::get_user`].
    async fn get_user(&self, id: UserId) -> Result<Option<User>>;

    /// The user whose normalised email is `email`.
    async fn get_user_by_email(&self, email: EmailKey<'_>) -> Result<Option<User>>;

    /// See [`crate::UserStore::update_user`]: read, [`UserPatch::apply`], and write at the
    /// version read, retrying a lost race unless the patch names a version.
    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User>;

    /// See [`crate::UserStore::delete_user`].
    async fn delete_user(&self, id: UserId) -> Result<()>;

    /// See [`crate::UserStore::list_users`].
    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>>;
}

/// OAuth accounts as a backend implements them; callers get [`crate::OAuthAccountStore`].
#[async_trait]
pub trait OAuthBackend: UserBackend {
    /// Stores a validated link: [`crate::Error::NotFound`] if its user does not exist,
    /// [`crate::Error::AlreadyExists`] if the pair is linked to any user. A backend whose
    /// database checks the pair first may answer `AlreadyExists` for a missing user: the layer
    /// then reads the user and answers `NotFound`, as every backend must.
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount>;

    /// See [`crate::OAuthAccountStore::update_oauth_account`].
    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount>;

    /// See [`crate::OAuthAccountStore::remove_oauth_account`].
    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()>;

    /// See [`crate::OAuthAccountStore::oauth_accounts`].
    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>>;

    /// See [`crate::OAuthAccountStore::get_user_by_oauth_account`].
    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>>;
}

/// Access tokens as a backend implements them: it stores and finds hashes only. Callers get
/// [`crate::AccessTokenStore`], which generates the secret and checks `max_age`.
#[async_trait]
pub trait TokenBackend: UserBackend {
    /// Stores `token` under `hash`; [`crate::Error::NotFound`] if its user does not exist.
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()>;

    /// The token stored under `hash`, whatever its age.
    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>>;

    /// Deletes the token stored under `hash`; true if it existed.
    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool>;

    /// See [`crate::AccessTokenStore::delete_access_tokens_for_user`].
    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()>;
}

/// The tables store, as a backend implements it; [`crate::table::TableStore`] comes from it.
///
/// Every argument is checked: documents are canonical [`Row`]s with their keys read, keys
/// and query values have the schema's types, cursors are decoded into positions, and pages
/// are cut by the layer (a backend returns up to `fetch` records after `after`). A backend
/// reports a taken key or unique value as [`Error::AlreadyExists`](crate::Error) (`"record"`
/// or `"unique value"`), a version mismatch as [`Error::Conflict`](crate::Error) (`"record"`)
/// from the database's answer to the write, a missing record on a versioned write as
/// [`Error::NotFound`](crate::Error) (`"record"`), and a table that does not exist as
/// [`Error::NotFound`](crate::Error) (`"table"`).
#[async_trait]
pub trait TableBackend: Backend {
    /// How fresh index queries are; read-after-write unless the database says otherwise.
    fn index_consistency(&self) -> Consistency {
        Consistency::ReadAfterWrite
    }

    /// What a read asking for [`Consistency::Eventual`] gets
    /// ([`crate::table::TableStore::eventual_reads`]); read-after-write unless the backend
    /// overrides the eventual reads below.
    fn eventual_reads(&self) -> Consistency {
        Consistency::ReadAfterWrite
    }

    /// Records in the store's catalog a table that existed before `ensure_table` found it
    /// matching the schema (one made outside storekit and adopted), so that what lists a
    /// store's tables (`storekit stats`, `copy`, `schema check`) sees it. Called by
    /// `ensure_table` whenever the table existed; a table already recorded is left as it is.
    /// By default nothing: a backend whose tables all come through its catalog (SQL, memory)
    /// has nothing to add.
    async fn record_table(&self, schema: &TableSchema) -> Result<()> {
        let _ = schema;
        Ok(())
    }

    /// [`TableBackend::get`] (whole, `fetch` `None`) or [`TableBackend::get_selected`], at
    /// `consistency`. By default the consistent read, which a backend without replicas gives
    /// for an eventual one too.
    async fn get_at(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Option<Record>> {
        let _ = consistency;
        match fetch {
            None => self.get(schema, key).await,
            Some(fetch) => self.get_selected(schema, key, fetch).await,
        }
    }

    /// [`TableBackend::get_many`] or [`TableBackend::get_many_selected`] at `consistency`,
    /// as [`TableBackend::get_at`].
    async fn get_many_at(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Record>>> {
        let _ = consistency;
        match fetch {
            None => self.get_many(schema, keys).await,
            Some(fetch) => self.get_many_selected(schema, keys, fetch).await,
        }
    }

    /// [`TableBackend::get`] with the document as the database holds it: a backend that
    /// keeps JSON text returns [`Body::Text`](crate::table::Body), which a typed read
    /// parses once, straight into its type. By default the parsed record.
    async fn get_stored(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<StoredRecord>> {
        Ok(self.get(schema, key).await?.map(StoredRecord::from))
    }

    /// [`TableBackend::get_many`] as [`TableBackend::get_stored`] reads: in the order of `keys`
    /// (repeats included).
    async fn get_many_stored(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<StoredRecord>>> {
        let found = self.get_many(schema, keys).await?;
        Ok(found
            .into_iter()
            .map(|record| record.map(StoredRecord::from))
            .collect())
    }

    /// The live table's keys and indexes, or `None` if it does not exist.
    async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>>;

    /// The names of the tables this store holds (as declared, without the store's prefix),
    /// in any order. Read only when `ensure_table` is about to create a table, to refuse a
    /// name that differs from an existing one only in letter case.
    async fn table_names(&self) -> Result<Vec<String>>;

    /// Creates the table with every declared index and waits until it is usable; succeeds if
    /// a concurrent call created it first.
    async fn create_table(&self, schema: &TableSchema) -> Result<()>;

    /// Adds the `missing` indexes to a live table, fills them from its records, and waits
    /// until they are usable. Every record's values in them have their index's types (the
    /// layer checked before); one that lacks a value, or holds `null`, is left out. A unique
    /// index whose values are already taken twice is
    /// [`Error::AlreadyExists`](crate::Error) (`"unique value"`), and then nothing of the
    /// missing indexes is left behind: no column, no SQL index, no marker.
    async fn add_indexes(&self, schema: &TableSchema, missing: &MissingIndexes) -> Result<()>;

    /// Leaves the live query indexes named `undeclared`, which `schema` does not declare,
    /// out of what this store maintains: a backend whose writes keep its indexes itself (SQL,
    /// memory) forgets them, since writes through `schema` no longer keep them, so that
    /// declaring one again rebuilds it. A backend whose database keeps its indexes (DynamoDB's
    /// global secondary indexes) has nothing to do: the default.
    async fn forget_indexes(&self, schema: &TableSchema, undeclared: &[String]) -> Result<()> {
        let _ = (schema, undeclared);
        Ok(())
    }

    /// Whether a query on a partial index ([`crate::table::IndexProjection`]) returns only
    /// what the index holds, as DynamoDB does; otherwise (the default) the backend returns
    /// whole records and the layer trims them to the index's fields.
    fn queries_index_projections(&self) -> bool {
        false
    }

    /// Drops the table; `false` if it did not exist.
    async fn drop_table(&self, schema: &TableSchema) -> Result<bool>;

    /// Writes a new record at version 1.
    async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()>;

    /// Writes a record whether or not it exists; returns its new version.
    async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64>;

    /// Overwrites a record at `expected`, writing version `expected + 1`.
    async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()>;

    /// Deletes a record (at `expected`, if given); `false` if there was none and no version
    /// was given.
    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool>;

    /// Reads one record, consistently.
    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>>;

    /// Reads records consistently, in the order of `keys` (repeats included).
    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>>;

    /// Whether a record exists, consistently.
    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool>;

    /// The record holding `values` in the schema's unique index number `index`, consistently.
    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>>;

    /// Up to `query.fetch` records of a query that meet its filter, in its order, after
    /// `query.after`, reading at most `query.budget` records; with what it read
    /// ([`Fetched`]).
    async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Fetched>;

    /// [`TableBackend::query`] with the documents as the database holds them, as
    /// [`TableBackend::get_stored`] reads: what a typed query reads straight into its type.
    /// By default the parsed records.
    async fn query_stored(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
    ) -> Result<Fetched<StoredRecord>> {
        self.query(schema, query)
            .await?
            .try_map(|record| Ok(StoredRecord::from(record)))
    }

    // Projections (issue 21, item 3). `fetch` is a checked selection that already holds
    // whatever the layer needs whole (the table's keys, the queried index's keys, the ttl
    // field); the layer trims the answer to what the caller selected. By default the backend
    // reads whole records and projects them in storekit ([`Projection::project_record`]);
    // a backend that can project in the database overrides these, with the same answer.

    /// [`TableBackend::get`], the document projected to `fetch`.
    async fn get_selected(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: &Projection,
    ) -> Result<Option<Record>> {
        Ok(self
            .get(schema, key)
            .await?
            .map(|record| fetch.project_record(record)))
    }

    /// [`TableBackend::get_many`], the documents projected to `fetch`.
    async fn get_many_selected(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: &Projection,
    ) -> Result<Vec<Option<Record>>> {
        Ok(self
            .get_many(schema, keys)
            .await?
            .into_iter()
            .map(|found| found.map(|record| fetch.project_record(record)))
            .collect())
    }

    /// [`TableBackend::query`], the documents projected to `fetch` after the filter tested
    /// the whole records.
    async fn query_selected(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
        fetch: &Projection,
    ) -> Result<Fetched> {
        let mut fetched = self.query(schema, query).await?;
        fetched.records = std::mem::take(&mut fetched.records)
            .into_iter()
            .map(|record| fetch.project_record(record))
            .collect();
        Ok(fetched)
    }

    /// Up to `scan.fetch` records that meet its filter after the record `scan.after`, in the
    /// backend's own stable order, reading at most `scan.budget` records; with what it read
    /// ([`Fetched`]).
    async fn scan(&self, schema: &TableSchema, scan: &TableScan<'_>) -> Result<Fetched>;

    /// [`TableBackend::scan`] with the documents as the database holds them, as
    /// [`TableBackend::query_stored`]. By default the parsed records.
    async fn scan_stored(
        &self,
        schema: &TableSchema,
        scan: &TableScan<'_>,
    ) -> Result<Fetched<StoredRecord>> {
        self.scan(schema, scan)
            .await?
            .try_map(|record| Ok(StoredRecord::from(record)))
    }

    /// How many records the table holds.
    async fn count(&self, schema: &TableSchema) -> Result<u64>;

    /// How big the table is, as the database knows without reading it
    /// ([`crate::table::TableStore::table_size`]); by default nothing is known.
    async fn table_size(&self, schema: &TableSchema) -> Result<crate::table::TableSize> {
        let _ = schema;
        Ok(crate::table::TableSize::default())
    }

    /// How many records of a query meet its filter, over its whole range (`query.after` and
    /// `query.budget` are `None`; `query.fetch` means nothing). By default the range is read
    /// page by page through [`TableBackend::query`]; a backend that can count in the
    /// database overrides it (SQL's `COUNT`, DynamoDB's `Select=COUNT`).
    async fn count_query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<u64> {
        const PAGE: usize = 1000;
        let sort_def = query.index.and_then(|i| schema.indexes()[i].sort());
        let mut after: Option<crate::table::Position> = None;
        let mut count = 0u64;
        loop {
            let page = IndexQuery {
                after: after.as_ref(),
                fetch: PAGE,
                budget: None,
                ..*query
            };
            let fetched = self.query(schema, &page).await?;
            count += fetched.records.len() as u64;
            let Some(last) = fetched.records.last() else {
                return Ok(count);
            };
            if fetched.records.len() < PAGE {
                return Ok(count);
            }
            let sort = match sort_def {
                Some(def) => def.read_stored(&last.document)?,
                None => None,
            };
            after = Some(crate::table::Position {
                sort,
                key: last.key.clone(),
            });
        }
    }

    /// Applies a checked patch to the record at `key` atomically, if `condition` holds on it
    /// (a failed one is [`Error::Conflict`](crate::Error::Conflict) with `what` `"condition"`); returns the new version
    /// and what `returning` asks for ([`crate::table::patch::returned`]).
    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)>;

    // Batches (issue 21, item 6).

    /// Writes 1 to [`MAX_BATCH`](crate::table::MAX_BATCH) rows with distinct keys, as
    /// [`TableBackend::put`] each (see [`crate::table::TableStore::put_many`] for the
    /// atomicity each backend gives); returns their new versions in order.
    async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>>;

    /// Deletes the records at 1 to [`MAX_BATCH`](crate::table::MAX_BATCH) distinct keys;
    /// missing ones are skipped.
    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()>;

    // Conditional writes (issue 21, item 5).

    /// Writes `row` if `condition` holds on the record as stored, or on an empty document
    /// when there is none ([`crate::table::patch::condition_holds`]); with `existing`, a
    /// missing record is [`Error::NotFound`](crate::Error) (`"record"`) instead. Decided
    /// atomically with the write (a failed condition is [`Error::Conflict`](crate::Error)
    /// with `what` `"condition"`, and nothing is written); returns the version written.
    async fn put_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        condition: &Condition,
        existing: bool,
    ) -> Result<u64>;

    /// Deletes the record if `condition` holds on it as stored (on an empty document when
    /// there is none, and then nothing is deleted: `false`), atomically with the delete.
    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool>;
    // Transactions (issue 21, item 7).

    /// Applies checked steps all together or not at all; a failed one is
    /// [`Error::TransactionFailed`](crate::Error::TransactionFailed) with its index, its own
    /// error as [`crate::table::transact::Step::resolve`] gives it.
    async fn transact(&self, steps: &[crate::table::transact::Step]) -> Result<()>;
}
