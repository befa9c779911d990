//! [`TokenBackend`]: token items keyed by the token's SHA-256 (computed by core, which also
//! generates the token), plus a reference in the user's partition so that all of a user's
//! tokens can be found without a scan.
//!
//! The raw token never reaches this crate, and is stored nowhere.

use aws_sdk_dynamodb::types::ReturnValue;
use storekit_core::backend::{TokenBackend, TokenHash};
use storekit_core::{AccessToken, Error, Result, UserId, async_trait};

use crate::DynamoDbStore;
use crate::count::Counted as _;
use crate::error;
use crate::item;
use crate::keys::{TOKEN_PREFIX, reference_key, token_key};
use crate::txn::{self, Condition, Outcome};

impl DynamoDbStore {
    async fn read_token(&self, hash: &str) -> Result<Option<AccessToken>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(token_key(hash)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        item.map(|item| item::from_item(item, &self.users_table))
            .transpose()
    }
}

#[async_trait]
impl TokenBackend for DynamoDbStore {
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()> {
        let user = token.user_id;
        let mut token_item = item::to_item(token)?;
        token_item.extend(token_key(&hash));
        let actions = vec![
            self.add_child(user)?,
            txn::put(&self.users_table, token_item, &Condition::absent())?,
            txn::put(
                &self.users_table,
                reference_key(user, &hash),
                &Condition::absent(),
            )?,
        ];
        match txn::transact(&self.client, actions).await? {
            Outcome::Done => Ok(()),
            Outcome::ConditionFailed { index: 0, .. } => Err(Error::NotFound { what: "user" }),
            // 256 random bits collided: report it rather than overwrite another session.
            Outcome::ConditionFailed { .. } => Err(error::bad_item(
                &self.users_table,
                "a token with the new token's hash already exists",
            )),
        }
    }

    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>> {
        self.read_token(&hash).await
    }

    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool> {
        let old = self
            .client
            .delete_item()
            .table_name(&self.users_table)
            .set_key(Some(token_key(&hash)))
            .return_values(ReturnValue::AllOld)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .attributes
            .filter(|item| !item.is_empty());
        let Some(old) = old else { return Ok(false) };
        let info: AccessToken = item::from_item(old, &self.users_table)?;
        // The reference alone is harmless (it names no live token); remove it all the same.
        self.client
            .delete_item()
            .table_name(&self.users_table)
            .set_key(Some(reference_key(info.user_id, &hash)))
            .send_counted()
            .await
            .map_err(error::sdk)?;
        Ok(true)
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        self.sweep_user_partition(user, TOKEN_PREFIX).await
    }
}
