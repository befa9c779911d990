//! Copying users out and in ([`UserTransferBackend`]), for `storekit copy`: a user with its
//! OAuth accounts and the hashes of its access tokens.
//!
//! | call | requests |
//! |---|---|
//! | `access_tokens_of` | Query of the user's token references, BatchGetItem of the tokens |
//! | `import_user` | (int ids: UpdateItem raising the id sequence to the id) + Query of the user's partition + TransactWriteItems (see below) |
//!
//! # Importing a user
//!
//! One TransactWriteItems writes the user item (conditioned on the user as the Query read it:
//! absent, or its version and `children` count, which it bumps, so a concurrent
//! `delete_user` reads again), claims its email (free or already the user's) and releases
//! the old one, claims and writes each of the bundle's OAuth accounts, removes the user's
//! other links with their claims, and writes its tokens with their references. A refused
//! claim is `AlreadyExists` (`"email"` or `"oauth account"`); a user changed meanwhile makes
//! the import read and try again. Tokens that do not fit in the 100 actions of that
//! transaction are written afterwards, 49 per transaction with the user's `children` bump; if
//! one of those fails, the user is written with only some of its tokens, and running the
//! import again (which `storekit copy` does on a re-run) writes the rest, since every write
//! is an idempotent put. A user with more OAuth accounts to write or remove than one
//! transaction holds (48) is refused with [`Error::InvalidInput`].

use std::collections::HashSet;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use storekit_core::time::now_millis;
use storekit_core::transfer::{StoredToken, UserBundle, UserTransferBackend};
use storekit_core::{AccessToken, Error, Result, UserId, async_trait};

use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::{self, PK, SK, key, s};
use crate::keys::{
    EMAIL_SK, OAUTH_PREFIX, SEQ_PK, SEQ_SK, TOKEN_PREFIX, USER_ID, claim_key, claim_of, email_pk,
    link_key, reference, reference_key, token_key,
};
use crate::retry::Backoff;
use crate::txn::{self, Condition, MAX_ACTIONS, Outcome};
use crate::users::{CHILDREN, UserHead};
use crate::{DynamoDbStore, batch};

/// Tokens per follow-up transaction: two actions each, and the user's `children` bump.
const TOKENS_PER_FOLLOW_UP: usize = (MAX_ACTIONS - 1) / 2;

/// What each action of an import's first transaction does, to read which one a refusal names.
#[derive(Debug, Clone)]
enum Role {
    /// Writes the user item.
    User,
    /// Claims the user's email.
    Email,
    /// Releases the user's old email claim.
    OldEmail,
    /// Claims an OAuth account (by reference).
    Claim(String),
    /// Anything else (links, tokens, references, releases of removed accounts).
    Other,
}

/// The transactions of one import: the first, with the role of each action, then the rest
/// of the tokens.
struct ImportPlan {
    first: Vec<TransactWriteItem>,
    roles: Vec<Role>,
    rest: Vec<Vec<TransactWriteItem>>,
}

impl DynamoDbStore {
    /// Makes the integer id sequence at least `id`, so `create_user` never hands it out.
    async fn raise_id_sequence(&self, id: i64) -> Result<()> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .set_key(Some(key(SEQ_PK, SEQ_SK)))
            .update_expression("SET #n = :id")
            .condition_expression("attribute_not_exists(#n) OR #n < :id")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":id", item::n(id))
            .send_counted()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Already at or past the id.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(error::sdk(err)),
        }
    }

    /// The transactions that make the stored user equal `bundle`, given the user as read
    /// (`head`) and the sort keys of its partition's other items.
    fn import_plan(
        &self,
        bundle: &UserBundle,
        head: Option<&UserHead>,
        children: &[String],
    ) -> Result<ImportPlan> {
        let table = &self.users_table;
        let user = &bundle.user;
        let id = user.id;
        let mut first = Vec::new();
        let mut roles = Vec::new();
        // The user item, bumping `children` past the value read, on which it conditions.
        let mut user_item = self.user_item(user)?;
        let (condition, children_count) = match head {
            Some(head) => (head.unchanged(), children_of(head, table)? + 1),
            None => (Condition::absent(), 1),
        };
        user_item.insert(CHILDREN.to_owned(), item::n(children_count));
        first.push(txn::put(table, user_item, &condition)?);
        roles.push(Role::User);
        let email_key = user.email_key()?;
        first.push(txn::put(
            table,
            self.email_claim(&email_key, id)?,
            &claim_of(id),
        )?);
        roles.push(Role::Email);
        if let Some(head) = head
            && head.email_key != email_key
        {
            first.push(txn::delete(
                table,
                key(email_pk(&head.email_key), EMAIL_SK),
                &claim_of(id),
            )?);
            roles.push(Role::OldEmail);
        }
        let mut wanted = HashSet::new();
        // A fresh revision, so an `update_oauth_account` that read the link before the import
        // cannot write over it (it conditions on the revision it read, a small count).
        let rev = now_millis();
        for account in &bundle.oauth_accounts {
            let reference = reference(&account.provider, &account.account_id);
            let mut claim = claim_key(&reference);
            claim.insert(USER_ID.to_owned(), s(id.to_string()));
            first.push(txn::put(table, claim, &claim_of(id))?);
            roles.push(Role::Claim(reference.clone()));
            first.push(txn::put_any(table, self.link_item(account, rev)?)?);
            roles.push(Role::Other);
            wanted.insert(reference);
        }
        for sort_key in children {
            let Some(reference) = sort_key.strip_prefix(OAUTH_PREFIX) else {
                continue;
            };
            if wanted.contains(reference) {
                continue;
            }
            first.push(txn::delete_any(table, link_key(id, reference))?);
            roles.push(Role::Other);
            first.push(txn::delete(table, claim_key(reference), &claim_of(id))?);
            roles.push(Role::Other);
        }
        if first.len() > MAX_ACTIONS {
            return Err(Error::invalid(
                "oauth accounts",
                "more OAuth accounts to write or remove than one transaction holds (48)",
            ));
        }
        let mut tokens = bundle.access_tokens.iter();
        let fit = (MAX_ACTIONS - first.len()) / 2;
        for token in tokens.by_ref().take(fit) {
            first.extend(self.token_actions(token)?);
            roles.extend([Role::Other, Role::Other]);
        }
        let rest: Vec<&StoredToken> = tokens.collect();
        let rest = rest
            .chunks(TOKENS_PER_FOLLOW_UP)
            .map(|chunk| {
                let mut actions = vec![self.add_child(id)?];
                for token in chunk {
                    actions.extend(self.token_actions(token)?);
                }
                Ok(actions)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImportPlan { first, roles, rest })
    }

    /// A token item (free or already the user's) and its reference.
    fn token_actions(&self, token: &StoredToken) -> Result<[TransactWriteItem; 2]> {
        let user = token.token.user_id;
        let mut token_item = item::to_item(&token.token)?;
        token_item.extend(token_key(&token.hash));
        // Compared as the token item stores it (a number for int ids), not as claims do.
        let owner = token_item
            .get(USER_ID)
            .cloned()
            .ok_or_else(|| error::bad_item(&self.users_table, "a token without its user"))?;
        let free_or_own = Condition::new("attribute_not_exists(#pk) OR #user_id = :user_id")
            .name("#pk", PK)
            .name("#user_id", USER_ID)
            .value(":user_id", owner);
        Ok([
            txn::put(&self.users_table, token_item, &free_or_own)?,
            txn::put_any(&self.users_table, reference_key(user, &token.hash))?,
        ])
    }
}

/// The `children` count a user item holds (0 before any link or token).
fn children_of(head: &UserHead, table: &str) -> Result<i64> {
    match &head.children {
        None => Ok(0),
        Some(AttributeValue::N(count)) => count
            .parse()
            .map_err(|_| error::bad_item(table, format!("children = {count} is not an i64"))),
        Some(_) => Err(error::bad_item(table, "children is not a number")),
    }
}

#[async_trait]
impl UserTransferBackend for DynamoDbStore {
    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        let references = batch::query_all(self.partition_query(user, TOKEN_PREFIX)).await?;
        let keys = references
            .iter()
            .map(|reference| {
                let sort_key = item::get_s(reference, &self.users_table, SK)?;
                Ok(token_key(
                    sort_key.strip_prefix(TOKEN_PREFIX).unwrap_or(sort_key),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let tokens = batch::get_all(&self.client, &self.users_table, keys, None).await?;
        tokens
            .into_iter()
            .map(|item| {
                let hash = item::get_s(&item, &self.users_table, PK)?
                    .strip_prefix(TOKEN_PREFIX)
                    .ok_or_else(|| error::bad_item(&self.users_table, "a token key"))?
                    .to_owned();
                let token: AccessToken = item::from_item(item, &self.users_table)?;
                Ok(StoredToken { hash, token })
            })
            .collect()
    }

    async fn import_user(&self, bundle: &UserBundle) -> Result<()> {
        let id = bundle.user.id;
        if let UserId::Int(n) = id {
            // First, so no `create_user` can take the id between the import and this.
            self.raise_id_sequence(n).await?;
        }
        let mut healed = HashSet::new();
        let mut backoff = Backoff::contention();
        loop {
            let partition = self.read_partition(id).await?;
            let plan = self.import_plan(bundle, partition.user.as_ref(), &partition.children)?;
            let (index, stored) = match txn::transact(&self.client, plan.first).await? {
                Outcome::Done => break self.import_rest(plan.rest).await,
                Outcome::ConditionFailed { index, item } => (index, item),
            };
            match plan.roles.get(index) {
                Some(Role::Email) => return Err(Error::AlreadyExists { what: "email" }),
                Some(Role::Claim(reference)) => {
                    // A claim left by a deleted user gives way once, as in add_oauth_account.
                    let orphan = match &stored {
                        Some(claim) if healed.insert(reference.clone()) => {
                            self.remove_orphan_claim(reference, claim).await?
                        }
                        _ => false,
                    };
                    if !orphan {
                        return Err(Error::AlreadyExists {
                            what: "oauth account",
                        });
                    }
                }
                // The user (or its old email claim) changed since it was read: read again.
                Some(Role::User | Role::OldEmail) => {
                    if !backoff.wait().await {
                        return Err(DynamoError::Contention {
                            attempts: backoff.failures(),
                        }
                        .into());
                    }
                }
                Some(Role::Other) | None => {
                    return Err(error::bad_item(
                        &self.users_table,
                        format!("user {id}: a token or link of the import belongs to another user"),
                    ));
                }
            }
        }
    }
}

impl DynamoDbStore {
    /// The follow-up token transactions of an import.
    async fn import_rest(&self, rest: Vec<Vec<TransactWriteItem>>) -> Result<()> {
        for actions in rest {
            if let Outcome::ConditionFailed { .. } = txn::transact(&self.client, actions).await? {
                return Err(error::bad_item(
                    &self.users_table,
                    "the imported user was deleted, or a token belongs to another user",
                ));
            }
        }
        Ok(())
    }
}
