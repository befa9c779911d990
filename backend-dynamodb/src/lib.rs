//! storekit backend for Amazon DynamoDB: [`DynamoDbStore`] implements storekit-core's
//! [backend traits](storekit_core::backend) on two tables, and so is a
//! [`UserStore`](storekit_core::UserStore), [`OAuthAccountStore`](storekit_core::OAuthAccountStore),
//! [`AccessTokenStore`](storekit_core::AccessTokenStore) and [`KvStore`](storekit_core::KvStore)
//! (core applies the input rules, hashes tokens and opens a span per call), and a
//! [`TableStore`](storekit_core::table::TableStore) on one DynamoDB table per declared table
//! (see [Tables store](#tables-store)); it passes the
//! storekit conformance suite against DynamoDB Local. Each call's span also counts the
//! DynamoDB requests it sent and the capacity units they consumed
//! (`aws.dynamodb.request_count`, `aws.dynamodb.consumed_capacity`); the capacity is asked for
//! only while the span is recorded, as it costs the server time to size.
//!
//! ```no_run
//! # async fn demo() -> storekit_core::Result<()> {
//! use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};
//!
//! let config = DynamoDbConfig::builder().table_prefix("myapp_").build()?;
//! let store = DynamoDbStore::connect(&config).await?; // standard AWS credential chain
//! store.migrate().await?; // creates `myapp_users`, `myapp_kv` and `myapp_storekit_unique` if missing
//! # Ok(()) }
//! ```
//!
//! # Tables
//!
//! Both tables (and the tables store's marker table, see [Tables store](#tables-store)) have a
//! string partition key `pk` and a string sort key `sk`, are billed per request, and are
//! created by [`DynamoDbStore::migrate`], never behind the caller's back (the marker table also
//! by the first `ensure_table`).
//!
//! **`{prefix}users`** holds users single-table style; every item is small, and each access
//! touches a known key:
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | user | `USER#{id}` | `USER` | the [`User`](storekit_core::User) fields; `extra` as a native map; `children` |
//! | email claim | `EMAIL#{normalised email}` | `EMAIL` | `user_id` |
//! | OAuth claim | `OAUTH#{len(provider)}#{provider}#{account id}` | `OAUTH` | `user_id` |
//! | OAuth link | `USER#{id}` | `OAUTH#{len(provider)}#{provider}#{account id}` | the [`OAuthAccount`](storekit_core::OAuthAccount) fields, `rev` |
//! | token | `TOKEN#{sha256(token)}` | `TOKEN` | `user_id`, `created_at` |
//! | token link | `USER#{id}` | `TOKEN#{sha256(token)}` | — |
//! | id sequence | `#SEQ` | `USER_ID` | `n` (only for integer ids) |
//!
//! Uniqueness lives in the claim items: an email or an OAuth account is taken by writing its
//! claim with `attribute_not_exists(pk)` in the same `TransactWriteItems` as the user or link,
//! so of racing writers exactly one succeeds, whatever the timing. (A global secondary index
//! could find an email but cannot enforce uniqueness, and is only eventually consistent.) The
//! provider's length in the OAuth key keeps `("a#b", "c")` and `("a", "b#c")` apart. A user's
//! item, links and token references share its partition, so one Query finds them all.
//!
//! `children` on a user item counts the links and tokens ever added to the user: the
//! transaction that adds one also bumps it (an `ADD` on the user item, conditioned on the user
//! existing), and `delete_user`'s transaction conditions on the value its Query read, so a link
//! or token committed after that Query makes the delete read the partition again instead of
//! leaving the new item behind. It is not the user's `version`, which only user updates change.
//!
//! **`{prefix}kv`** holds key-value items. A namespace is spread over `shard_count`
//! partitions (16 by default) so that one busy namespace is not one hot partition:
//! `pk = {namespace}#{shard}` where `shard = fnv1a64(key) % shard_count`, and `sk = key`.
//! The hash and the count are part of the layout: every store on a table must use the same
//! count. Values are binary attributes `v`; counters are number attributes `n`; an item with a
//! TTL has `exp` (the deadline in Unix milliseconds, checked exactly on every read) and `ttl`
//! (Unix seconds, rounded up) on which native TTL is enabled.
//!
//! # Tables store
//!
//! Each declared table is the DynamoDB table `{prefix}{name}`, created by `ensure_table` (or
//! made beforehand, e.g. by Terraform, and adopted as it is): its keys are the record's own
//! fields, every other field is a native attribute that other clients (a PynamoDB model) read
//! and write, and each query index is a global secondary index projecting what it declares
//! (`ALL`, `KEYS_ONLY` or `INCLUDE`), billed as the schema declares (on demand, or provisioned
//! per table and index) and tagged as it declares. Unique indexes
//! are marker items in `{prefix}storekit_unique`, claimed with `attribute_not_exists` in the
//! same `TransactWriteItems` as the record. Queries on a query index are eventually consistent
//! (GSIs cannot be read consistently); everything else reads consistently. The layout, the
//! catalog item and the requests of each call are described in the source of the `tables`
//! module.
//!
//! # Administration: `storekit migrate`, `schema`, `copy`
//!
//! Every table storekit makes is written down once, as a definition (name, key attributes
//! with their types, keys, global secondary indexes with their projections, TTL attribute,
//! billing and throughput, tags; the store's own tables billed per request), from which [`DynamoDbStore::migrate`] and `ensure_table` build their
//! CreateTable requests and [`export::terraform`] and [`export::cloudformation`] render
//! their resources, so an exported table is the table the store would make.
//! [`DynamoDbStore::migrate_report`] says what a migration created and what was there;
//! [`DynamoDbStore::schema_differences`] compares the live tables with the definitions
//! without changing anything. The store is also a
//! [`TransferStore`](storekit_core::transfer::TransferStore) (kv items with their deadlines,
//! users with their ids, accounts and token hashes, records at their versions); its requests
//! are described in the source beside each store's: the `kv` module, the `tables` module and
//! the `user_transfer` module.
//!
//! # Access patterns
//!
//! All reads are strongly consistent; every Query and Scan follows `LastEvaluatedKey` to the end.
//!
//! | operation | requests |
//! |---|---|
//! | `create_user` | (integer ids: UpdateItem `ADD` on the id sequence, returning the new value) + TransactWriteItems: put user, put email claim, both `attribute_not_exists` |
//! | `get_user` | GetItem user |
//! | `get_user_by_email` | GetItem email claim, GetItem user |
//! | `update_user` | GetItem user, then PutItem conditioned on the version read; if the email changes, TransactWriteItems of that put, the new claim (`attribute_not_exists`) and the old claim's delete. A lost race is retried, or is `Conflict` if the patch names a version |
//! | `delete_user` | Query of the user's partition, read backwards (the user item, then tokens, then links); TransactWriteItems deleting the user (conditioned on its `version` and `children` as read), its email claim (owned by the user) and, within 100 actions, the tokens with their references and the links with their claims (each claim only while it names the user). A refused condition (the user updated, a link or token added since the Query) means Query and transaction once more. Up to 49 links and tokens: 2 requests, the minimum (the email claim's key and the tokens' keys are known only from the read). Beyond 49, the rest the Query found are deleted after the transaction, as `delete_access_tokens_for_user` does, with a conditional DeleteItem per OAuth claim |
//! | `list_users` | Scan filtered on `sk = USER`, resuming after the cursor's user key |
//! | `add_oauth_account` | TransactWriteItems: user exists (Update `ADD children`, conditioned on it), put claim and link. If the claim is taken by a user that no longer exists (GetItem), TransactWriteItems deleting that claim (conditioned on its user) and that user's link, and the first transaction once more. If the account is taken, core's GetItem of the user (a missing user is reported first) |
//! | `update_oauth_account` | GetItem link, PutItem conditioned on its `rev` (retried on a lost race) |
//! | `remove_oauth_account` | TransactWriteItems deleting link and claim |
//! | `oauth_accounts` | Query the user's partition, `begins_with(sk, "OAUTH#")` |
//! | `get_user_by_oauth_account` | GetItem claim, GetItem user |
//! | `create_access_token` | TransactWriteItems: user exists (Update `ADD children`, conditioned on it), put token and token link |
//! | `get_access_token` | GetItem token |
//! | `delete_access_token` | DeleteItem token (returning it), DeleteItem token link |
//! | `delete_access_tokens_for_user` | Query the user's partition, `begins_with(sk, "TOKEN#")`; BatchWriteItem deletes |
//! | `get`, `contains` | GetItem (`contains` projects only the key and deadline) |
//! | `set` | PutItem |
//! | `delete` | DeleteItem returning the old item (to tell whether it was live) |
//! | `get_many` | BatchGetItem, 100 distinct keys per call |
//! | `set_many`, `delete_many` | BatchWriteItem, 25 distinct keys per call (the last of duplicate keys wins) |
//! | `keys` | one Query per shard, `begins_with(sk, prefix)`, pages fetched as the stream is read |
//! | `clear` | one Query per shard, each page deleted with BatchWriteItem |
//! | `set_if_absent` | PutItem with `attribute_not_exists(pk) OR exp <= now`, carrying the call's token `w` |
//! | `compare_and_swap` | PutItem with `(v = expected OR n = expected) AND live`, carrying the call's token `w` |
//! | `increment` | UpdateItem `SET n = n + delta` on a live counter, with an overflow bound, keeping the result under the call's token; else a conditional PutItem starting a new counter, or converting a live binary value of digits; then UpdateItem removing the token (2 requests; 3 for a new counter) |
//! | `purge_expired` | nothing: native TTL deletes expired items (see below) |
//!
//! `set_if_absent`, `compare_and_swap` and `increment` take effect exactly once, and answer
//! for their own write, when the SDK resends a request whose answer was lost after it landed;
//! the tokens that make it so never show in values read (see the `kv` module's source docs).
//!
//! Batch calls that come back with unprocessed items are resent with exponential backoff and
//! jitter; after 10 rounds without progress the operation fails with
//! [`Error::Unavailable`].
//!
//! # Expiry
//!
//! DynamoDB's native TTL deletes expired items in the background, typically within days and at
//! no write cost; until then every read compares `exp` with the clock, so an expired item is
//! never returned and counts as absent for `set_if_absent`, `compare_and_swap` and `increment`.
//! [`purge_expired`](storekit_core::KvStore::purge_expired) therefore does nothing and returns
//! 0: finding expired items without an index would be a full-table Scan, costing more than the
//! storage it frees.
//!
//! # Limits and caveats
//!
//! - A store built by [`DynamoDbStore::connect`] gives each request attempt 3 s and each
//!   request 10 s with its retries (see [`DynamoDbConfigBuilder::attempt_timeout`]); a request
//!   out of time, or whose connection is lost before the answer, fails with
//!   [`Error::OutcomeUnknown`] (it may have been applied); throttling, server faults and
//!   unreachable endpoints fail with [`Error::Unavailable`]. A client passed to
//!   [`DynamoDbStore::from_client`] keeps its own timeouts.
//! - Items are sized before they are written with DynamoDB's rule (attribute names plus
//!   values); an item over 400 KB is refused with
//!   [`Error::ValueTooLarge`] and no request is sent.
//!   storekit's shared limits already keep valid items well under it.
//! - `delete_user` deletes the user, its email claim and up to 49 of its tokens and OAuth links
//!   (tokens first) in one transaction. Links and tokens are only added by transactions that
//!   update the user item, on which that transaction conditions, so none can be added unseen
//!   while it runs, and none after it: a user with up to 49 is deleted all at once, with no
//!   token left readable and no OAuth account left claimed. For more, the rest are deleted after
//!   the transaction, and are left if that fails (the error is returned). An OAuth claim left so
//!   is removed by the next `add_oauth_account` for that account. A token left so stays readable
//!   with `get_access_token`, which reads the token item alone to keep lookups to one request,
//!   until `delete_access_tokens_for_user` is called with the deleted user's id.
//! - Concurrent `create_access_token` and `add_oauth_account` calls for one user all write its
//!   user item. Transactions that include the same item conflict whether they write it or only
//!   check it (as these did before `children`), so this adds no conflict: DynamoDB cancels the
//!   overlapping ones (`TransactionConflict`) and they are retried with backoff.
//! - `list_users` is a Scan of the users table: its cost grows with the whole table, so it is
//!   meant for administration and exports, not hot paths.

mod batch;
mod config;
mod count;
mod definition;
mod error;
pub mod export;
mod item;
mod keys;
mod kv;
mod listing;
mod oauth;
mod retry;
mod schema;
mod tables;
mod tokens;
mod txn;
mod user_transfer;
mod users;

use std::sync::Arc;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use storekit_core::admin::{Admin, MigrationReport, SchemaDifference};
use storekit_core::backend::Backend;
use storekit_core::{Error, Result};

pub use config::{DynamoDbConfig, DynamoDbConfigBuilder};

/// A storekit store on two DynamoDB tables; see the [crate docs](crate) for their layout.
///
/// Cloning is cheap and shares the client.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    /// Shared, so that a clone (e.g. the one a key listing owns) copies no config.
    config: Arc<DynamoDbConfig>,
    users_table: String,
    kv_table: String,
    /// The tables store's unique-value markers and table catalogs.
    unique_table: String,
}

impl Backend for DynamoDbStore {
    fn name(&self) -> &'static str {
        error::BACKEND
    }

    fn system(&self) -> &'static str {
        "aws.dynamodb"
    }
}

impl DynamoDbStore {
    /// A store using a client the caller already has. Sends no request.
    ///
    /// The client's own endpoint, region, credentials, retries and timeouts are used; those in
    /// `config` matter only to [`DynamoDbStore::connect`]. A client without an operation
    /// timeout waits for a silent server as long as the connection stays open, so give it one
    /// (`TimeoutConfig` in the SDK's config; the defaults storekit uses are
    /// [`DynamoDbConfig::DEFAULT_ATTEMPT_TIMEOUT`] and
    /// [`DynamoDbConfig::DEFAULT_OPERATION_TIMEOUT`]).
    #[must_use]
    pub fn from_client(client: Client, config: &DynamoDbConfig) -> Self {
        Self {
            client,
            users_table: config.users_table(),
            kv_table: config.kv_table(),
            unique_table: config.unique_table(),
            config: Arc::new(config.clone()),
        }
    }

    /// A store with a client built from the standard AWS configuration chain (environment,
    /// profile, instance role, ...), with the endpoint, region and credentials of `config`
    /// taking precedence, and the attempt and operation timeouts of `config` (a request that
    /// runs out of time fails with [`Error::OutcomeUnknown`]). Sends no request to DynamoDB.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self> {
        // Merged with the chain's defaults, which keep their connect timeout.
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(config.attempt_timeout())
            .operation_timeout(config.operation_timeout())
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(region) = config.region() {
            loader = loader.region(Region::new(region.to_owned()));
        }
        if let Some(endpoint) = config.endpoint() {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = config.static_credentials() {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "storekit-config",
            ));
        }
        let sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            // The SDK would fail every request later with a less helpful message.
            return Err(Error::invalid(
                "region",
                "no AWS region configured: set it in the config, the URL or AWS_REGION",
            ));
        }
        Ok(Self::from_client(Client::new(&sdk_config), config))
    }

    /// Creates the tables that are missing (pay per request: users, key-value, and the tables
    /// store's unique markers), waits until they are active and enables native TTL on the
    /// key-value table. Idempotent: existing tables are kept. The
    /// same act as `SqliteStore::migrate` and `PostgresStore::migrate`, under the same name.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_report().await.map(drop)
    }

    /// [`DynamoDbStore::migrate`], reporting each table and TTL setting as created by this
    /// call or already present (`table "myapp_users"`, `table "myapp_kv": time to live on
    /// "ttl"`). A table that exists but is laid out otherwise fails it with
    /// [`Error::Backend`].
    pub async fn migrate_report(&self) -> Result<MigrationReport> {
        schema::ensure(&self.client, &definition::own_tables(&self.config)).await
    }

    /// How the live database differs from what this code expects, without changing anything:
    /// the store's own tables (existence, key schema and attribute types, TTL on the right
    /// attribute), then every table the tables store's catalog records (its keys and global
    /// secondary indexes, with their key schema and projection, its billing and each index's
    /// throughput, and its declared tags where the server tells them, against the catalog).
    /// Empty when there is no difference. Indexes a table has beyond those expected are not
    /// differences: other clients may query by them ([`DynamoDbStore::undeclared_indexes`]
    /// lists them).
    pub async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        let mut differences = Vec::new();
        for table in definition::own_tables(&self.config) {
            differences.extend(schema::differences(&self.client, &table).await?);
        }
        for table in self.cataloged_definitions().await? {
            differences.extend(schema::differences(&self.client, &table).await?);
        }
        Ok(differences)
    }

    /// The global secondary indexes of the tables the tables store's catalog records that
    /// their schemas do not declare (`index "stock-index" is not declared: left alone`), by
    /// table: another client's indexes, which `ensure_table` and
    /// [`DynamoDbStore::schema_differences`] leave alone, listed by `storekit schema check`.
    pub async fn undeclared_indexes(&self) -> Result<Vec<SchemaDifference>> {
        let mut found = Vec::new();
        for table in self.cataloged_definitions().await? {
            found.extend(schema::undeclared(&self.client, &table).await?);
        }
        Ok(found)
    }

    /// Deletes the store's tables and everything in them, and waits until they are gone: users,
    /// key-value, the unique markers, and every table whose name starts with the prefix (the
    /// tables store's tables; so also those of another store whose prefix starts with this
    /// one), and the exact-named tables its catalog records as created by it (shared with
    /// any other store that uses them; an exact-named table it adopted is left). Meant for tests and teardown; missing tables are not
    /// an error. The same act as the SQL stores' `drop_tables`.
    pub async fn drop_tables(&self) -> Result<()> {
        let mut tables = self.tables_under_prefix().await?;
        let adopted = self.adopted_names().await?;
        for (name, shape) in self.catalogs().await? {
            if shape.exact_name && !tables.contains(&name) && !adopted.contains(&name) {
                tables.push(name);
            }
        }
        for own in [&self.users_table, &self.kv_table, &self.unique_table] {
            if !tables.contains(own) {
                tables.push(own.clone());
            }
        }
        schema::drop(&self.client, &tables).await
    }

    /// The former name of [`DynamoDbStore::migrate`].
    #[deprecated(since = "0.1.0", note = "renamed `migrate`, as on the other backends")]
    pub async fn ensure_schema(&self) -> Result<()> {
        self.migrate().await
    }

    /// The former name of [`DynamoDbStore::drop_tables`].
    #[deprecated(
        since = "0.1.0",
        note = "renamed `drop_tables`, as on the other backends"
    )]
    pub async fn drop_schema(&self) -> Result<()> {
        self.drop_tables().await
    }

    /// The config the store was built with.
    #[must_use]
    pub fn config(&self) -> &DynamoDbConfig {
        &self.config
    }

    /// The DynamoDB client the store uses.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every item of both tables, rendered as text, for tests and debugging: it lets a test
    /// check what is (and is not) stored. A full Scan of both tables; not for production use.
    pub async fn dump(&self) -> Result<String> {
        let mut text = String::new();
        for table in [&self.users_table, &self.kv_table] {
            let mut start = None;
            loop {
                let output = self
                    .client
                    .scan()
                    .table_name(table)
                    .consistent_read(true)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(error::sdk)?;
                for item in output.items() {
                    let mut attributes: Vec<_> = item.iter().collect();
                    attributes.sort_by(|a, b| a.0.cmp(b.0));
                    text.push_str(&format!("{table}: {attributes:?}\n"));
                }
                match output.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        Ok(text)
    }
}

/// Through the inherent methods of the same names, which stay so that code holding a
/// `DynamoDbStore` calls them without importing `Admin`.
#[async_trait::async_trait]
impl Admin for DynamoDbStore {
    async fn migrate_report(&self) -> Result<MigrationReport> {
        DynamoDbStore::migrate_report(self).await
    }

    async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        DynamoDbStore::schema_differences(self).await
    }

    async fn undeclared_indexes(&self) -> Result<Vec<SchemaDifference>> {
        DynamoDbStore::undeclared_indexes(self).await
    }

    async fn drop_tables(&self) -> Result<()> {
        DynamoDbStore::drop_tables(self).await
    }

    async fn dump(&self) -> Result<String> {
        DynamoDbStore::dump(self).await
    }
}
