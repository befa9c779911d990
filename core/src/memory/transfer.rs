//! Copying the memory store's kv items and users out and in (see [`crate::transfer`]), which
//! share its one state; the tables' transfer is in `tables.rs`, with the tables store.

use async_trait::async_trait;

use super::MemoryStore;
use crate::backend::Namespace;
use crate::time::{is_live, now_millis};
use crate::transfer::{
    KvEntry, KvPosition, KvTransferBackend, StoredToken, UserBundle, UserTransferBackend,
};
use crate::{Error, IdKind, Result, UserId};

#[async_trait]
impl KvTransferBackend for MemoryStore {
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let now = now_millis();
        let state = self.state();
        let mut namespaces: Vec<&String> = state
            .kv
            .keys()
            .filter(|ns| {
                namespace
                    .as_ref()
                    .is_none_or(|only| ns.as_str() == only.as_str())
            })
            .filter(|ns| after.is_none_or(|after| ns.as_str() >= after.namespace.as_str()))
            .collect();
        namespaces.sort();
        let mut page = Vec::with_capacity(limit);
        for ns in namespaces {
            let items = &state.kv[ns];
            let entries = items.iter().filter(|(key, _)| match after {
                Some(after) if after.namespace == *ns => key.as_str() > after.key.as_str(),
                _ => true,
            });
            for (key, entry) in entries.filter(|(_, entry)| is_live(entry.expires_at, now)) {
                if page.len() == limit {
                    return Ok(page);
                }
                page.push(KvEntry {
                    namespace: ns.clone(),
                    key: key.clone(),
                    value: entry.value.clone(),
                    expires_at: entry.expires_at,
                });
            }
        }
        Ok(page)
    }

    async fn import_kv(&self, items: &[KvEntry]) -> Result<()> {
        let mut state = self.state();
        for item in items {
            state.put(&item.namespace, &item.key, &item.value, item.expires_at);
        }
        Ok(())
    }
}

#[async_trait]
impl UserTransferBackend for MemoryStore {
    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        Ok(self
            .state()
            .tokens
            .iter()
            .filter(|(_, token)| token.user_id == user)
            .map(|(hash, token)| StoredToken {
                hash: hash.clone(),
                token: token.clone(),
            })
            .collect())
    }

    async fn import_user(&self, bundle: &UserBundle) -> Result<()> {
        let mut state = self.state();
        let user = &bundle.user;
        let email_key = user.email_key()?;
        // Every refusal before the first change: all of the bundle or nothing.
        if state
            .user_by_email
            .get(&email_key)
            .is_some_and(|holder| *holder != user.id)
        {
            return Err(Error::AlreadyExists { what: "email" });
        }
        for account in &bundle.oauth_accounts {
            let key = (account.provider.clone(), account.account_id.clone());
            if state
                .oauth
                .get(&key)
                .is_some_and(|held| held.user_id != user.id)
            {
                return Err(Error::AlreadyExists {
                    what: "oauth account",
                });
            }
        }
        if let Some(old) = state.users.get(&user.id) {
            let old_key = old.email_key()?;
            state.user_by_email.remove(&old_key);
        }
        state.user_by_email.insert(email_key, user.id);
        state.users.insert(user.id, user.clone());
        state.oauth.retain(|_, account| account.user_id != user.id);
        for account in &bundle.oauth_accounts {
            let key = (account.provider.clone(), account.account_id.clone());
            state.oauth.insert(key, account.clone());
        }
        for token in &bundle.access_tokens {
            state.tokens.insert(token.hash.clone(), token.token.clone());
        }
        if let (IdKind::Int, UserId::Int(id)) = (self.id_kind, user.id) {
            state.last_int_id = state.last_int_id.max(id);
        }
        Ok(())
    }
}
