//! What a peer must offer to be measured, and storekit offering it through its public API.
//!
//! The raw-driver baselines implement the same two traits, so one workload function measures
//! both and they do exactly the same work. storekit is reached through `Stores`, as trait
//! objects, like an application does.

use std::sync::Arc;
use std::time::Duration;

use storekit::futures::TryStreamExt as _;
use storekit::{BoxError, DynAuthStore, DynKvStore, NewUser, Stores, UserId, async_trait};

/// The key-value operations that are compared with a raw driver.
#[async_trait]
pub(crate) trait Kv: Send + Sync {
    /// True if a value was found.
    async fn get(&self, namespace: &str, key: &str) -> Result<bool, BoxError>;
    async fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), BoxError>;
    async fn contains(&self, namespace: &str, key: &str) -> Result<bool, BoxError>;
    /// True if a value was there.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BoxError>;
    async fn set_many(&self, namespace: &str, items: &[(&str, &[u8])]) -> Result<(), BoxError>;
    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<(), BoxError>;
    /// Every key of the namespace, read to the end; returns how many.
    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError>;
}

/// The user operations that are compared with a raw driver.
#[async_trait]
pub(crate) trait Users: Send + Sync {
    type Id: Clone + Send + Sync + 'static;
    async fn create_user(&self, email: &str) -> Result<Self::Id, BoxError>;
    /// True if the user was found.
    async fn get_user(&self, id: &Self::Id) -> Result<bool, BoxError>;
}

/// A password hash of a realistic length; hashing itself is not what is measured.
pub(crate) const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0YmVuY2g$3dZ3ZP2Zq8mQ5lq0o2mJ8oV0c2z6q3Ye1nTn2c8vV0k";

/// The age limit of token lookups, as a service checking logins would pass it.
pub(crate) const TOKEN_MAX_AGE: Duration = Duration::from_secs(3600);

/// storekit's stores, as an application holds them.
#[derive(Debug, Clone)]
pub(crate) struct Storekit {
    pub(crate) kv: Arc<DynKvStore>,
    pub(crate) auth: Arc<DynAuthStore>,
}

impl Storekit {
    pub(crate) fn new(stores: &Stores) -> Self {
        Self {
            kv: stores.kv(),
            auth: stores.auth(),
        }
    }
}

#[async_trait]
impl Kv for Storekit {
    async fn get(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        Ok(self.kv.get(namespace, key).await?.is_some())
    }

    async fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), BoxError> {
        Ok(self.kv.set(namespace, key, value, None).await?)
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        Ok(self.kv.contains(namespace, key).await?)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        Ok(self.kv.delete(namespace, key).await?)
    }

    async fn set_many(&self, namespace: &str, items: &[(&str, &[u8])]) -> Result<(), BoxError> {
        Ok(self.kv.set_many(namespace, items, None).await?)
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<(), BoxError> {
        Ok(self.kv.delete_many(namespace, keys).await?)
    }

    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        let keys = self.kv.keys(namespace, "");
        Ok(keys.try_fold(0, |n, _key| async move { Ok(n + 1) }).await?)
    }
}

#[async_trait]
impl Users for Storekit {
    type Id = UserId;

    async fn create_user(&self, email: &str) -> Result<UserId, BoxError> {
        let user = self
            .auth
            .create_user(NewUser::new(email, PASSWORD_HASH))
            .await?;
        Ok(user.id)
    }

    async fn get_user(&self, id: &UserId) -> Result<bool, BoxError> {
        Ok(self.auth.get_user(*id).await?.is_some())
    }
}
