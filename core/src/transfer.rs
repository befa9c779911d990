//! Reading a whole store out and writing it into another exactly: what `storekit copy` and
//! `storekit stats` are built on.
//!
//! A backend implements one transfer trait per store, beside that store's code:
//! [`KvTransferBackend`], [`UserTransferBackend`] and [`TableTransferBackend`]; callers use
//! [`TransferStore`], implemented once for every backend that has all three, which checks
//! input and opens the usual spans. Every write here is an
//! idempotent upsert keyed by what identifies the thing (a kv key, a user id, a record key), so
//! a copy that stops half-way and runs again neither loses nor duplicates anything.
//!
//! What is copied is what a user of the stores can observe:
//! - a kv item's value and its deadline (Unix milliseconds), so its remaining TTL carries over;
//! - a user with its id, every field and its version, its OAuth accounts and the hashes of its
//!   access tokens (a token itself is never stored anywhere, so it keeps working);
//! - a table record with its version, in a table reconstructed from the backend's catalog
//!   ([`TableSchema::from_shape`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::{KvBackend, Namespace, OAuthBackend, TableBackend, TokenBackend};
use crate::table::{Record, Row, TableSchema, TableShape};
use crate::trace::{Call, call_span};
use crate::{AccessToken, Error, IdKind, OAuthAccount, Result, User, UserId, validate};

/// The most items or records one import call takes.
pub const MAX_IMPORT_BATCH: usize = 1_000;

/// One kv item as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// When it expires, in Unix milliseconds; `None` never.
    pub expires_at: Option<i64>,
}

/// Where a kv export page ends: the (namespace, key) of its last item. The next page starts
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvPosition {
    /// The namespace of the last item read.
    pub namespace: String,
    /// The key of the last item read.
    pub key: String,
}

impl KvEntry {
    /// The position just after this item.
    #[must_use]
    pub fn position(&self) -> KvPosition {
        KvPosition {
            namespace: self.namespace.clone(),
            key: self.key.clone(),
        }
    }
}

/// An access token as stored: the SHA-256 hash of the token (hex, as
/// [`crate::token::hash`] makes it) and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token's hash.
    pub hash: String,
    /// Whose it is and when it was issued.
    pub token: AccessToken,
}

/// A user with everything that hangs off it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserBundle {
    /// The user, with its id, version and timestamps.
    pub user: User,
    /// Its OAuth accounts, ordered by (provider, account id).
    pub oauth_accounts: Vec<OAuthAccount>,
    /// Its access tokens, ordered by hash.
    pub access_tokens: Vec<StoredToken>,
}

impl UserBundle {
    /// Puts the accounts and tokens in their canonical order, so two bundles of the same user
    /// compare equal whatever order a backend listed them in.
    #[must_use]
    pub fn sorted(mut self) -> Self {
        self.oauth_accounts
            .sort_by(|a, b| (&a.provider, &a.account_id).cmp(&(&b.provider, &b.account_id)));
        self.access_tokens.sort_by(|a, b| a.hash.cmp(&b.hash));
        self
    }
}

/// What [`TransferStore::import_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The user did not exist and was written.
    Created,
    /// The user existed with other fields, accounts or tokens, and now equals the bundle.
    Updated,
    /// The user already equalled the bundle; nothing was written.
    Unchanged,
}

/// Copying kv items out and in, as a backend implements it beside its [`KvBackend`]. Every
/// argument has passed the rules.
#[async_trait]
pub trait KvTransferBackend: KvBackend {
    /// Up to `limit` live (unexpired) kv items after `after`, in the backend's own stable
    /// order, only of `namespace` when given. A page shorter than `limit` is the last one.
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>>;

    /// Writes every item with its value and deadline, replacing an item of the same key, in as
    /// few requests as the database allows. Items are checked, unexpired and have distinct
    /// keys; at most [`MAX_IMPORT_BATCH`].
    async fn import_kv(&self, items: &[KvEntry]) -> Result<()>;
}

/// Copying users out and in, with their OAuth accounts and token hashes, as a backend
/// implements it beside its user traits. Every argument has passed the rules.
#[async_trait]
pub trait UserTransferBackend: OAuthBackend + TokenBackend {
    /// The hashes and records of `user`'s access tokens, in any order.
    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>>;

    /// Makes the stored user equal `bundle`: the user with its id and every field (version and
    /// timestamps included) written as given, its OAuth accounts exactly the bundle's (others
    /// of that user removed), its tokens added. All of it or nothing.
    ///
    /// [`Error::AlreadyExists`](crate::Error) (`"email"`) if another user holds the email,
    /// (`"oauth account"`) if another user holds one of the accounts. With int ids, later
    /// `create_user` calls must never hand out an id at or below an imported one.
    async fn import_user(&self, bundle: &UserBundle) -> Result<()>;
}

/// Copying tables out and in, as a backend implements it beside its [`TableBackend`]. Every
/// argument has passed the rules.
#[async_trait]
pub trait TableTransferBackend: TableBackend {
    /// Every table the backend's catalog records, with its shape, ordered by name.
    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>>;

    /// Writes each record at the given version, replacing a record of the same key (and
    /// moving its unique values). [`Error::AlreadyExists`](crate::Error) (`"unique value"`) if
    /// another record holds one of its unique values. Keys are distinct; at most
    /// [`MAX_IMPORT_BATCH`] rows.
    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()>;
}

/// Reading a store out and writing it back exactly, on any backend, as `Arc<dyn
/// TransferStore>` (from `storekit::Stores::transfer`).
#[async_trait]
pub trait TransferStore: std::fmt::Debug + Send + Sync + 'static {
    /// The kind of user ids this store makes.
    fn id_kind(&self) -> IdKind;

    /// One page of live kv items after `after` (see [`KvTransferBackend::export_kv`]); `limit`
    /// is 1 to [`MAX_IMPORT_BATCH`].
    async fn export_kv(
        &self,
        namespace: Option<&str>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>>;

    /// Writes items with their values and deadlines, replacing items of the same key. Items
    /// already expired are skipped; the count written is returned.
    async fn import_kv(&self, items: &[KvEntry]) -> Result<usize>;

    /// The user with its OAuth accounts and token hashes, or `None` if there is no such user.
    async fn export_user(&self, id: UserId) -> Result<Option<UserBundle>>;

    /// Makes the stored user equal `bundle` (see [`UserTransferBackend::import_user`]); nothing is
    /// written when it already does. A user whose id kind differs from the store's is
    /// [`Error::InvalidInput`].
    async fn import_user(&self, bundle: &UserBundle) -> Result<Imported>;

    /// Every table the store holds, as schemas rebuilt from the catalog (without computed
    /// keys, whose values are already in the records).
    async fn tables(&self) -> Result<Vec<TableSchema>>;

    /// Writes records at their versions (see [`TableTransferBackend::import_records`]), after the
    /// same checks as any write; at most [`MAX_IMPORT_BATCH`].
    async fn import_records(&self, schema: &TableSchema, records: &[Record]) -> Result<()>;
}

macro_rules! call {
    ($backend:expr, $op:literal, $collection:expr) => {{
        let system = $backend.system();
        let span = call_span!($backend.name(), system, $op, $collection);
        Call::new(span, system, $op)
    }};
}

fn check_batch(what: &'static str, len: usize) -> Result<()> {
    if len > MAX_IMPORT_BATCH {
        return Err(Error::invalid(
            what,
            format!("{len} in one call; at most {MAX_IMPORT_BATCH}"),
        ));
    }
    Ok(())
}

fn check_entry(entry: &KvEntry) -> Result<()> {
    Namespace::checked(&entry.namespace)?;
    crate::backend::Key::checked(&entry.key)?;
    validate::check_value(&entry.value)
}

#[async_trait]
impl<B: KvTransferBackend + UserTransferBackend + TableTransferBackend> TransferStore for B {
    fn id_kind(&self) -> IdKind {
        crate::backend::UserBackend::id_kind(self)
    }

    async fn export_kv(
        &self,
        namespace: Option<&str>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        call!(self, "export_kv", namespace.unwrap_or("*"))
            .run(
                async {
                    if limit == 0 {
                        return Err(Error::invalid("limit", "must be at least 1"));
                    }
                    check_batch("limit", limit)?;
                    let namespace = namespace.map(Namespace::checked).transpose()?;
                    KvTransferBackend::export_kv(self, namespace, after, limit).await
                },
                |items| Some(items.len()),
                || format!("namespace {:?}", namespace.unwrap_or("*")),
            )
            .await
    }

    async fn import_kv(&self, items: &[KvEntry]) -> Result<usize> {
        call!(self, "import_kv", "*")
            .run(
                async {
                    check_batch("items", items.len())?;
                    let now = crate::now().timestamp_millis();
                    let mut seen = std::collections::HashSet::new();
                    let mut live = Vec::with_capacity(items.len());
                    for item in items {
                        check_entry(item)?;
                        if !seen.insert((&item.namespace, &item.key)) {
                            return Err(Error::invalid(
                                "items",
                                format!(
                                    "namespace {:?}, key {:?} twice in one batch",
                                    item.namespace, item.key
                                ),
                            ));
                        }
                        if item.expires_at.is_none_or(|at| at > now) {
                            live.push(item.clone());
                        }
                    }
                    if !live.is_empty() {
                        KvTransferBackend::import_kv(self, &live).await?;
                    }
                    Ok(live.len())
                },
                |written| Some(*written),
                || format!("{} items", items.len()),
            )
            .await
    }

    async fn export_user(&self, id: UserId) -> Result<Option<UserBundle>> {
        call!(self, "export_user", "users")
            .run(
                async {
                    id.expect_kind(crate::backend::UserBackend::id_kind(self))?;
                    let Some(user) = crate::backend::UserBackend::get_user(self, id).await? else {
                        return Ok(None);
                    };
                    let oauth_accounts = OAuthBackend::oauth_accounts(self, id).await?;
                    let access_tokens = UserTransferBackend::access_tokens_of(self, id).await?;
                    Ok(Some(
                        UserBundle {
                            user,
                            oauth_accounts,
                            access_tokens,
                        }
                        .sorted(),
                    ))
                },
                |found| Some(usize::from(found.is_some())),
                || format!("user {id}"),
            )
            .await
    }

    async fn import_user(&self, bundle: &UserBundle) -> Result<Imported> {
        call!(self, "import_user", "users")
            .run(
                async {
                    let id = bundle.user.id;
                    id.expect_kind(crate::backend::UserBackend::id_kind(self))?;
                    check_bundle(bundle)?;
                    let wanted = bundle.clone().sorted();
                    let existing = TransferStore::export_user(self, id).await?;
                    if existing.as_ref() == Some(&wanted) {
                        return Ok(Imported::Unchanged);
                    }
                    UserTransferBackend::import_user(self, &wanted).await?;
                    Ok(if existing.is_some() {
                        Imported::Updated
                    } else {
                        Imported::Created
                    })
                },
                |_| Some(1),
                || format!("user {}", bundle.user.id),
            )
            .await
    }

    async fn tables(&self) -> Result<Vec<TableSchema>> {
        call!(self, "list_tables", "*")
            .run(
                async {
                    TableTransferBackend::list_tables(self)
                        .await?
                        .iter()
                        .map(|(name, shape)| TableSchema::from_shape(name, shape))
                        .collect()
                },
                |tables: &Vec<TableSchema>| Some(tables.len()),
                String::new,
            )
            .await
    }

    async fn import_records(&self, schema: &TableSchema, records: &[Record]) -> Result<()> {
        call!(self, "import_records", schema.name())
            .run(
                async {
                    check_batch("records", records.len())?;
                    let mut seen = std::collections::HashSet::new();
                    let mut rows = Vec::with_capacity(records.len());
                    for record in records {
                        let row = schema.row(record.document.clone())?;
                        if row.key() != &record.key {
                            return Err(Error::invalid(
                                "record",
                                "its key differs from the key its document holds",
                            ));
                        }
                        if !seen.insert(row.key().clone()) {
                            return Err(Error::invalid("records", "one key twice in one batch"));
                        }
                        crate::table::check_version(record.version)?;
                        rows.push((row, record.version));
                    }
                    if rows.is_empty() {
                        return Ok(());
                    }
                    TableTransferBackend::import_records(self, schema, &rows).await
                },
                |()| Some(records.len()),
                || format!("table {:?}, {} records", schema.name(), records.len()),
            )
            .await
    }
}

/// A bundle's accounts and tokens must belong to its user, and each once.
fn check_bundle(bundle: &UserBundle) -> Result<()> {
    let id = bundle.user.id;
    let mut accounts = std::collections::HashSet::new();
    for account in &bundle.oauth_accounts {
        if account.user_id != id {
            return Err(Error::invalid("oauth account", "belongs to another user"));
        }
        crate::check_oauth_key(&account.provider, &account.account_id)?;
        if !accounts.insert((&account.provider, &account.account_id)) {
            return Err(Error::invalid("oauth account", "listed twice"));
        }
    }
    let mut hashes = std::collections::HashSet::new();
    for token in &bundle.access_tokens {
        if token.token.user_id != id {
            return Err(Error::invalid("access token", "belongs to another user"));
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if token.hash.len() != 64 || !token.hash.bytes().all(lower_hex) {
            return Err(Error::invalid(
                "access token",
                "hash is not 64 lower-case hex digits",
            ));
        }
        if !hashes.insert(&token.hash) {
            return Err(Error::invalid("access token", "listed twice"));
        }
    }
    bundle.user.email_key().map(drop)
}
