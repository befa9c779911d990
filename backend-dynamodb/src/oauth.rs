//! [`OAuthBackend`]: a claim item per (provider, account id), unique across users, and a
//! link item holding the account in its user's partition.
//!
//! Claim and link are written and removed together in one transaction; the claim's
//! `attribute_not_exists` condition is what makes a pair linkable to one user only. A claim
//! whose user no longer exists (left by an unfinished `delete_user` of a user with more links
//! and tokens than one transaction holds) gives way to the next
//! `add_oauth_account` for that pair.

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use storekit_core::backend::{OAuthBackend, OAuthKey};
use storekit_core::{Error, OAuthAccount, OAuthAccountPatch, Result, User, UserId, async_trait};

use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::{self, Item, PK, SK, s};
use crate::keys::{OAUTH_PREFIX, USER_ID, claim_key, claim_of, link_key, reference, user_pk};
use crate::retry::Backoff;
use crate::txn::{self, Condition, Outcome};
use crate::{DynamoDbStore, batch};

/// A link's revision, bumped by every update so concurrent updates cannot overwrite each other.
const REV: &str = "rev";

impl DynamoDbStore {
    pub(crate) fn link_item(&self, account: &OAuthAccount, rev: i64) -> Result<Item> {
        let mut item = item::to_item(account)?;
        item.extend(link_key(
            account.user_id,
            &reference(&account.provider, &account.account_id),
        ));
        item.insert(REV.to_owned(), item::n(rev));
        item::check_size(&item)?;
        Ok(item)
    }

    async fn read_link(
        &self,
        user: UserId,
        reference: &str,
    ) -> Result<Option<(OAuthAccount, i64)>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(link_key(user, reference)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        let Some(item) = item else { return Ok(None) };
        let rev = item::get_i64(&item, &self.users_table, REV)?.unwrap_or(0);
        Ok(Some((item::from_item(item, &self.users_table)?, rev)))
    }

    /// If `claim` (as stored under `reference`) names a user that does not exist, deletes it and
    /// that user's link, and returns true.
    ///
    /// Such a claim is left by a `delete_user` of a user with more links and tokens than one
    /// transaction holds, that failed after its transaction. User ids are never
    /// reused, so its user cannot come back: the claim would block the account forever.
    pub(crate) async fn remove_orphan_claim(&self, reference: &str, claim: &Item) -> Result<bool> {
        let owner = self.stored_user_id(claim)?;
        if self.read_user(owner).await?.is_some() {
            return Ok(false);
        }
        let still_orphaned = Condition::new("#user_id = :orphan")
            .name("#user_id", USER_ID)
            .value(":orphan", s(owner.to_string()));
        let actions = vec![
            txn::delete(&self.users_table, claim_key(reference), &still_orphaned)?,
            txn::delete_any(&self.users_table, link_key(owner, reference))?,
        ];
        // A failed condition means someone else removed the claim first (and may have taken
        // the account since): the caller's retry tells which.
        txn::transact(&self.client, actions).await?;
        tracing::info!(%owner, "removed an OAuth claim left by a deleted user");
        Ok(true)
    }

    /// Deletes a claim unless it has meanwhile been taken by another user.
    pub(crate) async fn delete_oauth_claim(&self, claim: Item, user: UserId) -> Result<()> {
        let condition = claim_of(user);
        let request = self
            .client
            .delete_item()
            .table_name(&self.users_table)
            .set_key(Some(claim))
            .condition_expression(condition.expression())
            .set_expression_attribute_names(condition.names())
            .set_expression_attribute_values(condition.values());
        match txn::retry_conflicts(|| request.clone().send_counted()).await {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(error::sdk(err)),
        }
    }
}

#[async_trait]
impl OAuthBackend for DynamoDbStore {
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount> {
        let user = account.user_id;
        let reference = reference(&account.provider, &account.account_id);
        let mut claim = claim_key(&reference);
        claim.insert(USER_ID.to_owned(), s(user.to_string()));
        item::check_size(&claim)?;
        let actions = vec![
            self.add_child(user)?,
            txn::put(&self.users_table, claim, &Condition::absent())?,
            txn::put(
                &self.users_table,
                self.link_item(&account, 0)?,
                &Condition::absent(),
            )?,
        ];
        let mut healed = false;
        loop {
            match txn::transact(&self.client, actions.clone()).await? {
                Outcome::Done => return Ok(account),
                Outcome::ConditionFailed { index: 0, .. } => {
                    return Err(Error::NotFound { what: "user" });
                }
                Outcome::ConditionFailed {
                    index: 1,
                    item: Some(claim),
                } if !healed => {
                    healed = true;
                    if !self.remove_orphan_claim(&reference, &claim).await? {
                        return Err(Error::AlreadyExists {
                            what: "oauth account",
                        });
                    }
                }
                Outcome::ConditionFailed { .. } => {
                    return Err(Error::AlreadyExists {
                        what: "oauth account",
                    });
                }
            }
        }
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        let reference = reference(key.provider(), key.account_id());
        let mut backoff = Backoff::contention();
        loop {
            let (current, rev) =
                self.read_link(user, &reference)
                    .await?
                    .ok_or(Error::NotFound {
                        what: "oauth account",
                    })?;
            let next = patch.apply(&current)?;
            let same_rev = Condition::new("#rev = :rev")
                .name("#rev", REV)
                .value(":rev", item::n(rev));
            match self
                .put_if(self.link_item(&next, rev.saturating_add(1))?, &same_rev)
                .await?
            {
                Outcome::Done => return Ok(next),
                Outcome::ConditionFailed { item: None, .. } => {
                    return Err(Error::NotFound {
                        what: "oauth account",
                    });
                }
                Outcome::ConditionFailed { .. } => {
                    if !backoff.wait().await {
                        return Err(DynamoError::Contention {
                            attempts: backoff.failures(),
                        }
                        .into());
                    }
                }
            }
        }
    }

    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()> {
        let reference = reference(key.provider(), key.account_id());
        let actions = vec![
            txn::delete(
                &self.users_table,
                link_key(user, &reference),
                &Condition::exists(),
            )?,
            txn::delete(&self.users_table, claim_key(&reference), &claim_of(user))?,
        ];
        match txn::transact(&self.client, actions).await? {
            Outcome::Done => Ok(()),
            Outcome::ConditionFailed { index: 0, .. } => Err(Error::NotFound {
                what: "oauth account",
            }),
            Outcome::ConditionFailed { .. } => Err(error::bad_item(
                &self.users_table,
                format!("user {user} has a link whose claim belongs to another user"),
            )),
        }
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        let query = self
            .client
            .query()
            .table_name(&self.users_table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(user_pk(user)))
            .expression_attribute_values(":prefix", s(OAUTH_PREFIX));
        let mut accounts = batch::query_all(query)
            .await?
            .into_iter()
            .map(|item| item::from_item::<OAuthAccount>(item, &self.users_table))
            .collect::<Result<Vec<_>>>()?;
        // The sort key orders by provider length first; the promise is provider, account id.
        accounts.sort_by(|a, b| (&a.provider, &a.account_id).cmp(&(&b.provider, &b.account_id)));
        Ok(accounts)
    }

    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>> {
        let reference = reference(key.provider(), key.account_id());
        let claim = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(claim_key(&reference)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        match claim {
            Some(claim) => self.read_user(self.stored_user_id(&claim)?).await,
            None => Ok(None),
        }
    }
}
