//! [`UserBackend`] on the users table: user items, email claims and the integer id sequence.
//!
//! Email uniqueness is decided by DynamoDB: the claim item `EMAIL#{normalised email}` is
//! written with `attribute_not_exists` in the same transaction as the user, and a refused
//! condition on it is `AlreadyExists { what: "email" }`. Updates are optimistic: read, apply
//! the patch, write conditioned on the version read. A user is deleted with one Query of its
//! partition and one transaction holding its links, tokens and their claims whenever they fit in
//! one; the transaction conditions on the user's `children` count, so a link or token added
//! after the Query refuses it and the delete reads the partition again.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use std::collections::HashSet;

use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use storekit_core::backend::{EmailKey, UserBackend, UserPageRequest};
use storekit_core::{Error, IdKind, Page, Result, User, UserDraft, UserId, UserPatch, async_trait};

use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::{self, Item, PK, SK, key, s};
use crate::keys::{
    EMAIL_SK, OAUTH_PREFIX, SEQ_PK, SEQ_SK, TOKEN_PREFIX, USER_ID, USER_SK, claim_key, claim_of,
    email_pk, token_key, user_pk,
};
use crate::retry::Backoff;
use crate::txn::{self, Condition, Outcome};
use crate::{DynamoDbStore, batch};

pub(crate) const VERSION: &str = "version";
const EMAIL: &str = "email";
/// How many links and tokens were ever added to a user: a number on the user item that every
/// transaction adding one bumps (see [`DynamoDbStore::add_child`]) and `delete_user` conditions
/// on. It is not the user's `version`, which only user updates change. `update_user`'s put
/// drops it; that is safe because the put also bumps the version, on which the delete conditions
/// too.
pub(crate) const CHILDREN: &str = "children";
/// Scan page size for listing: a user owns at least two items (itself and its email claim).
const ITEMS_PER_USER: usize = 3;

impl DynamoDbStore {
    pub(crate) fn user_key(&self, id: UserId) -> Item {
        key(user_pk(id), USER_SK)
    }

    /// A user read with a strongly consistent GetItem.
    pub(crate) async fn read_user(&self, id: UserId) -> Result<Option<User>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(self.user_key(id)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?;
        output.item.map(|item| self.decode_user(item)).transpose()
    }

    fn decode_user(&self, item: Item) -> Result<User> {
        let user: User = item::from_item(item, &self.users_table)?;
        if user.id.kind() != self.config.id_kind() {
            return Err(error::bad_item(
                &self.users_table,
                format!(
                    "user id {} is not a {:?} id as configured",
                    user.id,
                    self.config.id_kind()
                ),
            ));
        }
        Ok(user)
    }

    /// The user item, sized and checked before any request.
    pub(crate) fn user_item(&self, user: &User) -> Result<Item> {
        // `extra`'s numbers are within DynamoDB's range: core's `validate::normalize_extra`
        // checked them before any backend sees a user.
        let mut item = item::to_item(user)?;
        item.extend(key(user_pk(user.id), USER_SK));
        item::check_size(&item)?;
        Ok(item)
    }

    pub(crate) fn email_claim(&self, email_key: &str, id: UserId) -> Result<Item> {
        let mut item = key(email_pk(email_key), EMAIL_SK);
        item.insert(USER_ID.to_owned(), s(id.to_string()));
        item::check_size(&item)?;
        Ok(item)
    }

    /// Parses a user id stored in a claim or token item.
    pub(crate) fn stored_user_id(&self, item: &Item) -> Result<UserId> {
        let text = item::get_s(item, &self.users_table, USER_ID)?;
        UserId::parse(self.config.id_kind(), text)
            .map_err(|e| error::bad_item(&self.users_table, e))
    }

    /// A transaction action for every transaction that adds a link or token to a user's
    /// partition: it fails unless the user exists, and bumps the user's [`CHILDREN`] count, so
    /// that a `delete_user` whose Query missed the new item fails its transaction and reads the
    /// partition again.
    pub(crate) fn add_child(&self, id: UserId) -> Result<TransactWriteItem> {
        let exists = Condition::exists()
            .name("#children", CHILDREN)
            .value(":one", item::n(1));
        txn::update(
            &self.users_table,
            self.user_key(id),
            "ADD #children :one",
            &exists,
        )
    }

    /// The next integer id: an atomic `ADD` on the sequence item, so ids only grow.
    async fn next_int_id(&self) -> Result<i64> {
        let output = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .set_key(Some(key(SEQ_PK, SEQ_SK)))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", item::n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send_counted()
            .await
            .map_err(error::sdk)?;
        let attributes = output.attributes.unwrap_or_default();
        item::get_i64(&attributes, &self.users_table, "n")?
            .ok_or_else(|| error::bad_item(&self.users_table, "the id sequence returned no value"))
    }

    /// Writes the patched user if the stored version is still `current.version`; moves the
    /// email claim in the same transaction when the normalised email changes.
    async fn write_update(&self, current: &User, next: &User) -> Result<Outcome> {
        let item = self.user_item(next)?;
        let same_version = Condition::new("#version = :version")
            .name("#version", VERSION)
            .value(":version", item::n(version_number(current.version)?));
        let (old_key, new_key) = (current.email_key()?, next.email_key()?);
        if old_key == new_key {
            return self.put_if(item, &same_version).await;
        }
        let owned_by_user = Condition::new("#user_id = :user_id")
            .name("#user_id", USER_ID)
            .value(":user_id", s(current.id.to_string()));
        let actions = vec![
            txn::put(&self.users_table, item, &same_version)?,
            txn::put(
                &self.users_table,
                self.email_claim(&new_key, next.id)?,
                &Condition::absent(),
            )?,
            txn::delete(
                &self.users_table,
                key(email_pk(&old_key), EMAIL_SK),
                &owned_by_user,
            )?,
        ];
        txn::transact(&self.client, actions).await
    }

    /// A single conditional PutItem on the users table, reported like a one-action transaction.
    pub(crate) async fn put_if(&self, item: Item, condition: &Condition) -> Result<Outcome> {
        let request = self
            .client
            .put_item()
            .table_name(&self.users_table)
            .set_item(Some(item))
            .condition_expression(condition.expression())
            .set_expression_attribute_names(condition.names())
            .set_expression_attribute_values(condition.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match txn::retry_conflicts(|| request.clone().send_counted()).await {
            Ok(_) => Ok(Outcome::Done),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Outcome::ConditionFailed {
                        index: 0,
                        item: failed.item().cloned(),
                    })
                }
                _ => Err(error::sdk(err)),
            },
        }
    }

    /// The version stored in an item a failed condition returned.
    fn stored_version(&self, item: &Item) -> Result<u64> {
        item::get_i64(item, &self.users_table, VERSION)?
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| error::bad_item(&self.users_table, "user item without a version"))
    }
}

#[async_trait]
impl UserBackend for DynamoDbStore {
    fn id_kind(&self) -> IdKind {
        self.config.id_kind()
    }

    async fn create_user(&self, draft: UserDraft) -> Result<User> {
        let id = match self.config.id_kind() {
            IdKind::Uuid => UserId::Uuid(uuid::Uuid::now_v7()),
            IdKind::Int => UserId::Int(self.next_int_id().await?),
        };
        let email_key = draft.email_key.clone();
        let user = draft.into_user(id);
        let actions = vec![
            txn::put(
                &self.users_table,
                self.user_item(&user)?,
                &Condition::absent(),
            )?,
            txn::put(
                &self.users_table,
                self.email_claim(&email_key, id)?,
                &Condition::absent(),
            )?,
        ];
        match txn::transact(&self.client, actions).await? {
            Outcome::Done => Ok(user),
            Outcome::ConditionFailed { index: 1, .. } => {
                Err(Error::AlreadyExists { what: "email" })
            }
            Outcome::ConditionFailed { .. } => Err(error::bad_item(
                &self.users_table,
                format!("a user with the new id {id} already exists"),
            )),
        }
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.read_user(id).await
    }

    async fn get_user_by_email(&self, email_key: EmailKey<'_>) -> Result<Option<User>> {
        let claim = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(key(email_pk(&email_key), EMAIL_SK)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        let Some(claim) = claim else { return Ok(None) };
        let user = self.read_user(self.stored_user_id(&claim)?).await?;
        // A claim is moved in the same transaction as its user's email, so the two agree; the
        // check only guards against reading between a delete's two steps.
        Ok(user.filter(|u| u.email_key().is_ok_and(|k| k == *email_key)))
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User> {
        let mut backoff = Backoff::contention();
        loop {
            let current = self
                .read_user(id)
                .await?
                .ok_or(Error::NotFound { what: "user" })?;
            let next = patch.apply(&current)?;
            match self.write_update(&current, &next).await? {
                Outcome::Done => return Ok(next),
                Outcome::ConditionFailed { index: 0, item } => {
                    let Some(stored) = item else {
                        return Err(Error::NotFound { what: "user" });
                    };
                    let actual = self.stored_version(&stored)?;
                    if let Some(expected) = patch.expected_version {
                        return Err(Error::Conflict {
                            what: "user",
                            expected,
                            actual,
                        });
                    }
                    // Another update won the race: apply this patch again on top of it.
                    if !backoff.wait().await {
                        return Err(DynamoError::Contention {
                            attempts: backoff.failures(),
                        }
                        .into());
                    }
                }
                Outcome::ConditionFailed { index: 1, .. } => {
                    return Err(Error::AlreadyExists { what: "email" });
                }
                Outcome::ConditionFailed { .. } => {
                    return Err(error::bad_item(
                        &self.users_table,
                        format!("the email claim of user {id} belongs to another user"),
                    ));
                }
            }
        }
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let table = &self.users_table;
        let mut backoff = Backoff::contention();
        // Claims found naming another user: their links are deleted without them.
        let mut foreign_claims = HashSet::new();
        let leftover = loop {
            let partition = self.read_partition(id).await?;
            let user = partition.user.ok_or(Error::NotFound { what: "user" })?;
            let owned_by_user = Condition::new("#user_id = :user_id")
                .name("#user_id", USER_ID)
                .value(":user_id", s(id.to_string()));
            let mut actions = vec![
                txn::delete(table, self.user_key(id), &user.unchanged())?,
                txn::delete(
                    table,
                    key(email_pk(&user.email_key), EMAIL_SK),
                    &owned_by_user,
                )?,
            ];
            // The OAuth claim each action deletes, to tell which one a failed condition was on.
            let mut claims = vec![None, None];
            let mut children = partition.children.into_iter().peekable();
            while let Some(sort_key) = children.peek() {
                let link = key(user_pk(id), sort_key.as_str());
                let extra = match PartitionItem::of(sort_key) {
                    PartitionItem::Token(token) => Some((txn::delete_any(table, token)?, None)),
                    PartitionItem::OAuthLink(claim) => {
                        let claim_pk = item::get_s(&claim, table, PK)?.to_owned();
                        if foreign_claims.contains(&claim_pk) {
                            None
                        } else {
                            let action = txn::delete(table, claim, &claim_of(id))?;
                            Some((action, Some(claim_pk)))
                        }
                    }
                    PartitionItem::User | PartitionItem::Other => None,
                };
                if actions.len() + usize::from(extra.is_some()) + 1 > txn::MAX_ACTIONS {
                    break;
                }
                if let Some((action, claim)) = extra {
                    actions.push(action);
                    claims.push(claim);
                }
                actions.push(txn::delete_any(table, link)?);
                claims.push(None);
                children.next();
            }
            match txn::transact(&self.client, actions).await? {
                Outcome::Done => break children.collect::<Vec<_>>(),
                Outcome::ConditionFailed {
                    index: 0,
                    item: None,
                } => {
                    return Err(Error::NotFound { what: "user" });
                }
                Outcome::ConditionFailed { index: 1, .. } => {
                    return Err(error::bad_item(
                        table,
                        format!("the email claim of user {id} belongs to another user"),
                    ));
                }
                Outcome::ConditionFailed { index, .. } => {
                    // Index 0: the user was updated, or a link or token was added to it, after
                    // the Query. Otherwise an OAuth claim now names another user: its link was
                    // removed and the account linked elsewhere since the Query (the next Query
                    // will not see the link), or the data is inconsistent (the link is then
                    // deleted alone). Either way, read the partition again.
                    if let Some(Some(claim_pk)) = claims.get(index) {
                        foreign_claims.insert(claim_pk.clone());
                    }
                    if !backoff.wait().await {
                        return Err(DynamoError::Contention {
                            attempts: backoff.failures(),
                        }
                        .into());
                    }
                }
            }
        };
        // The user is gone, so nothing can be added to its partition any more: what is left is
        // exactly what the Query found beyond one transaction, usually nothing.
        self.delete_partition_items(id, leftover).await
    }

    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>> {
        let mut start = page.after.map(|after| self.user_key(after));
        let scan_limit = i32::try_from((page.limit + 1) * ITEMS_PER_USER).unwrap_or(i32::MAX);
        let mut users = Vec::new();
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.users_table)
                .filter_expression("#sk = :user")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":user", s(USER_SK))
                .consistent_read(true)
                .limit(scan_limit)
                .set_exclusive_start_key(start)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            for item in output.items.unwrap_or_default() {
                users.push(self.decode_user(item)?);
            }
            start = output.last_evaluated_key.filter(|k| !k.is_empty());
            if users.len() > page.limit || start.is_none() {
                break;
            }
        }
        // The Scan resumes after any key, so the cursor is simply the last user returned.
        let next = if users.len() > page.limit {
            users.truncate(page.limit);
            users.last().map(|u| u.id.to_string())
        } else {
            None
        };
        Ok(Page::new(users, next))
    }
}

/// An item of a user's partition, told by its sort key, with the item outside the partition
/// that goes with it.
enum PartitionItem {
    /// The user itself.
    User,
    /// A token reference, and the key of its token.
    Token(Item),
    /// An OAuth link, and the key of its claim.
    OAuthLink(Item),
    /// Nothing this crate writes; deleted on its own.
    Other,
}

impl PartitionItem {
    fn of(sort_key: &str) -> Self {
        if sort_key == USER_SK {
            Self::User
        } else if let Some(hash) = sort_key.strip_prefix(TOKEN_PREFIX) {
            Self::Token(token_key(hash))
        } else if let Some(reference) = sort_key.strip_prefix(OAUTH_PREFIX) {
            Self::OAuthLink(claim_key(reference))
        } else {
            Self::Other
        }
    }
}

/// What `delete_user` reads of a user's partition.
#[derive(Default)]
pub(crate) struct Partition {
    /// The user item, if it exists.
    pub(crate) user: Option<UserHead>,
    /// The sort keys of the other items, in descending order.
    pub(crate) children: Vec<String>,
}

/// What `delete_user` needs of a user item.
pub(crate) struct UserHead {
    pub(crate) version: i64,
    pub(crate) email_key: String,
    /// The [`CHILDREN`] count, absent until a link or token is added.
    pub(crate) children: Option<AttributeValue>,
}

impl UserHead {
    /// The user item is as read: no update (its version) and no link or token added (its
    /// [`CHILDREN`] count) since.
    pub(crate) fn unchanged(&self) -> Condition {
        let condition = match &self.children {
            Some(count) => Condition::new("#version = :version AND #children = :children")
                .value(":children", count.clone()),
            None => Condition::new("#version = :version AND attribute_not_exists(#children)"),
        };
        condition
            .name("#version", VERSION)
            .name("#children", CHILDREN)
            .value(":version", item::n(self.version))
    }
}

impl DynamoDbStore {
    /// A Query of the keys of a user's partition whose sort key starts with `prefix` (all of
    /// them for `""`).
    pub(crate) fn partition_query(&self, id: UserId, prefix: &str) -> QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.users_table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(user_pk(id)))
            .projection_expression("#pk, #sk");
        if prefix.is_empty() {
            query.key_condition_expression("#pk = :pk")
        } else {
            query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
        }
    }

    /// The user's partition in one strongly consistent Query (more pages only past 1 MB):
    /// what `delete_user` needs of the user item, and the sort keys of the other items in
    /// descending order, so that tokens (`TOKEN#…`) come before links (`OAUTH#…`).
    pub(crate) async fn read_partition(&self, id: UserId) -> Result<Partition> {
        let table = &self.users_table;
        let query = self
            .partition_query(id, "")
            .projection_expression("#pk, #sk, #version, #email, #children")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_names("#email", EMAIL)
            .expression_attribute_names("#children", CHILDREN)
            .scan_index_forward(false);
        let mut partition = Partition::default();
        for item in batch::query_all(query).await? {
            let sort_key = item::get_s(&item, table, SK)?;
            if sort_key != USER_SK {
                partition.children.push(sort_key.to_owned());
                continue;
            }
            let version = item::get_i64(&item, table, VERSION)?
                .ok_or_else(|| error::bad_item(table, "user item without a version"))?;
            let email_key = storekit_core::normalize_email(item::get_s(&item, table, EMAIL)?)?;
            partition.user = Some(UserHead {
                version,
                email_key,
                children: item.get(CHILDREN).cloned(),
            });
        }
        Ok(partition)
    }

    /// Deletes the items of a user's partition whose sort key starts with `prefix` (all of them
    /// for `""`), together with the claims and tokens they reference.
    pub(crate) async fn sweep_user_partition(&self, id: UserId, prefix: &str) -> Result<()> {
        let sort_keys = batch::query_all(self.partition_query(id, prefix))
            .await?
            .iter()
            .map(|item| item::get_s(item, &self.users_table, SK).map(str::to_owned))
            .collect::<Result<Vec<_>>>()?;
        self.delete_partition_items(id, sort_keys).await
    }

    /// Deletes these items of a user's partition, by sort key, with the tokens they reference
    /// and the OAuth claims of their links (each claim only while it names the user): a
    /// conditional DeleteItem per claim, then BatchWriteItem.
    async fn delete_partition_items(&self, id: UserId, sort_keys: Vec<String>) -> Result<()> {
        let mut deletes = Vec::new();
        let mut oauth_claims = Vec::new();
        for sort_key in sort_keys {
            match PartitionItem::of(&sort_key) {
                // Only ever seen while the user exists, and then not the sweep's to delete.
                PartitionItem::User => continue,
                PartitionItem::Token(token) => deletes.push(token),
                PartitionItem::OAuthLink(claim) => oauth_claims.push(claim),
                PartitionItem::Other => {}
            }
            deletes.push(key(user_pk(id), sort_key));
        }
        for claim in oauth_claims {
            self.delete_oauth_claim(claim, id).await?;
        }
        let requests = deletes
            .into_iter()
            .map(batch::delete_request)
            .collect::<Result<Vec<_>>>()?;
        batch::write_all(&self.client, &self.users_table, requests).await
    }
}

/// Versions are stored as DynamoDB numbers through i64.
pub(crate) fn version_number(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is too large"))
}
