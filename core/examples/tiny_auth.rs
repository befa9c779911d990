//! A complete user, OAuth account and access token backend in one file, which passes
//! storekit's conformance suite.
//!
//! A backend implements `UserBackend`, `OAuthBackend` and `TokenBackend`, whose arguments
//! storekit has already checked (emails normalised, ids of the store's kind, patches valid,
//! tokens hashed), and gets `UserStore`, `OAuthAccountStore` and `AccessTokenStore` for free.
//! Run it with `cargo run -p storekit-core --example tiny_auth`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use storekit_conformance::{Fixture, SetupContext, Suite, run_suite};
use storekit_core::admin::{Admin, MigrationReport, SchemaDifference};
use storekit_core::backend::{
    Backend, EmailKey, OAuthBackend, OAuthKey, TokenBackend, TokenHash, UserBackend,
    UserPageRequest,
};
use storekit_core::{
    AccessToken, Error, IdKind, MemoryStore, OAuthAccount, OAuthAccountPatch, Page, Result, User,
    UserDraft, UserId, UserPatch, async_trait,
};

/// Everything, behind one lock: every call is atomic.
#[derive(Debug, Default)]
struct State {
    users: BTreeMap<UserId, User>,
    /// Normalised email to user: the uniqueness rule.
    emails: HashMap<String, UserId>,
    /// (provider, account id) to link: unique across users.
    links: BTreeMap<(String, String), OAuthAccount>,
    /// Token hash to token.
    tokens: HashMap<String, AccessToken>,
    last_id: i64,
}

#[derive(Debug, Default, Clone)]
struct TinyAuth {
    kind: IdKind,
    state: Arc<Mutex<State>>,
}

impl TinyAuth {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const NO_USER: Error = Error::NotFound { what: "user" };
const NO_LINK: Error = Error::NotFound {
    what: "oauth account",
};
const EMAIL_TAKEN: Error = Error::AlreadyExists { what: "email" };

fn link_key(key: OAuthKey<'_>) -> (String, String) {
    (key.provider().to_owned(), key.account_id().to_owned())
}

impl Backend for TinyAuth {
    fn name(&self) -> &'static str {
        "tiny"
    }

    fn system(&self) -> &'static str {
        "tiny"
    }
}

#[async_trait]
impl UserBackend for TinyAuth {
    fn id_kind(&self) -> IdKind {
        self.kind
    }

    async fn create_user(&self, user: UserDraft) -> Result<User> {
        let mut state = self.state();
        if state.emails.contains_key(&user.email_key) {
            return Err(EMAIL_TAKEN);
        }
        let id = match self.kind {
            IdKind::Uuid => UserId::Uuid(uuid::Uuid::now_v7()),
            IdKind::Int => {
                state.last_id += 1;
                UserId::Int(state.last_id)
            }
        };
        state.emails.insert(user.email_key.clone(), id);
        let user = user.into_user(id);
        state.users.insert(id, user.clone());
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.state().users.get(&id).cloned())
    }

    async fn get_user_by_email(&self, email: EmailKey<'_>) -> Result<Option<User>> {
        let state = self.state();
        let id = state.emails.get(email.as_str());
        Ok(id.and_then(|id| state.users.get(id)).cloned())
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User> {
        let mut state = self.state();
        let current = state.users.get(&id).ok_or(NO_USER)?;
        let next = patch.apply(current)?;
        let (old_email, new_email) = (current.email_key()?, next.email_key()?);
        if new_email != old_email {
            if state.emails.contains_key(&new_email) {
                return Err(EMAIL_TAKEN);
            }
            state.emails.remove(&old_email);
            state.emails.insert(new_email, id);
        }
        state.users.insert(id, next.clone());
        Ok(next)
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut state = self.state();
        let user = state.users.remove(&id).ok_or(NO_USER)?;
        state.emails.remove(&user.email_key()?);
        state.links.retain(|_, link| link.user_id != id);
        state.tokens.retain(|_, token| token.user_id != id);
        Ok(())
    }

    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>> {
        let state = self.state();
        let after = state
            .users
            .range(..)
            .filter(|(id, _)| page.after.is_none_or(|a| **id > a));
        let items = after
            .take(page.limit + 1)
            .map(|(_, user)| user.clone())
            .collect();
        Ok(Page::from_overfetch(items, page.limit, |user| {
            user.id.to_string()
        }))
    }
}

#[async_trait]
impl OAuthBackend for TinyAuth {
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount> {
        let mut state = self.state();
        if !state.users.contains_key(&account.user_id) {
            return Err(NO_USER);
        }
        let key = (account.provider.clone(), account.account_id.clone());
        if state.links.contains_key(&key) {
            return Err(Error::AlreadyExists {
                what: "oauth account",
            });
        }
        state.links.insert(key, account.clone());
        Ok(account)
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        let mut state = self.state();
        let link = state
            .links
            .get_mut(&link_key(key))
            .filter(|l| l.user_id == user);
        let link = link.ok_or(NO_LINK)?;
        *link = patch.apply(link)?;
        Ok(link.clone())
    }

    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()> {
        let mut state = self.state();
        let key = link_key(key);
        match state.links.get(&key) {
            Some(link) if link.user_id == user => {
                state.links.remove(&key);
                Ok(())
            }
            _ => Err(NO_LINK),
        }
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        let state = self.state();
        let links = state.links.values().filter(|link| link.user_id == user);
        Ok(links.cloned().collect())
    }

    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>> {
        let state = self.state();
        let link = state.links.get(&link_key(key));
        Ok(link
            .and_then(|link| state.users.get(&link.user_id))
            .cloned())
    }
}

#[async_trait]
impl TokenBackend for TinyAuth {
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()> {
        let mut state = self.state();
        if !state.users.contains_key(&token.user_id) {
            return Err(NO_USER);
        }
        state.tokens.insert(hash.to_string(), token.clone());
        Ok(())
    }

    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>> {
        Ok(self.state().tokens.get(hash.as_str()).cloned())
    }

    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool> {
        Ok(self.state().tokens.remove(hash.as_str()).is_some())
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        self.state().tokens.retain(|_, token| token.user_id != user);
        Ok(())
    }
}

/// Nothing to migrate or compare: the state lives in this process. `dump` shows what it holds,
/// for the cases that check what is stored (the conformance fixture reads it).
#[async_trait]
impl Admin for TinyAuth {
    async fn migrate_report(&self) -> Result<MigrationReport> {
        Ok(MigrationReport::default())
    }

    async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        Ok(Vec::new())
    }

    async fn drop_tables(&self) -> Result<()> {
        *self.state() = State::default();
        Ok(())
    }

    async fn dump(&self) -> Result<String> {
        Ok(format!("{:?}", self.state()))
    }
}

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let auth = Arc::new(TinyAuth {
        kind: ctx.id_kind,
        state: Arc::default(),
    });
    // The user cases use only `auth`; the fixture's key-value store is a stand-in.
    Some(Fixture::parts(
        auth.clone(),
        Arc::new(MemoryStore::new()),
        auth,
    ))
}

#[tokio::main]
async fn main() {
    run_suite(Suite::Users, setup).await;
}
