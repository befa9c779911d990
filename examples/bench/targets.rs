//! What a peer must offer to be measured, and storekit offering it through its public API.
//!
//! The raw-driver baselines implement the same traits, so one workload function measures
//! both and they do exactly the same work. storekit is reached through `Stores`, as trait
//! objects, like an application does.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storekit::futures::TryStreamExt as _;
use storekit::table::{Condition, KeyDef, Patch, Query, Returning, Table, TableSchema};
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

/// A product of the catalogue, as both peers store it: a JSON document keyed by `id`, listed by
/// `name`, newest (`updated_at`) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Product {
    /// A UUID, as text.
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) price_cents: u64,
    /// Seconds since the epoch, as the catalogue keeps it.
    pub(crate) updated_at: f64,
    pub(crate) description: String,
}

/// The table, and its index, that `products` is stored in.
pub(crate) const PRODUCTS: &str = "products";
pub(crate) const NAME_INDEX: &str = "product-name-index";

/// The catalogue's table: products by id, and by name newest first.
pub(crate) fn products_schema() -> Result<TableSchema, BoxError> {
    Ok(TableSchema::builder(PRODUCTS, KeyDef::text("id"))
        .index(
            NAME_INDEX,
            KeyDef::text("name"),
            Some(KeyDef::float("updated_at")),
        )
        .build()?)
}

/// The product-table operations that are compared with a raw driver.
#[async_trait]
pub(crate) trait Products: Send + Sync {
    /// Creates the table and its index, as `Table::ensure` does.
    async fn create_products(&self) -> Result<(), BoxError>;
    /// Drops the table and everything in it.
    async fn drop_products(&self) -> Result<(), BoxError>;
    /// Writes a new product; fails if its id is taken.
    async fn insert_product(&self, product: &Product) -> Result<(), BoxError>;
    async fn get_product(&self, id: &str) -> Result<Option<Product>, BoxError>;
    /// Reads the product, sets its price and time, and writes it back if no other write came
    /// in between (reading again if one did).
    async fn update_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError>;
    /// The first page of the products named `name`, newest first, and whether a page follows.
    async fn newest_products(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError>;
    /// Sets the product's price and time in one request, without reading it first (an update
    /// expression), and bumps its version.
    async fn patch_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError>;
    /// The first full page of the products named `name` costing at least `min_price`, newest
    /// first, filtered by the database, and whether a page follows.
    async fn newest_products_from(
        &self,
        name: &str,
        min_price: u64,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError>;
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
    pub(crate) products: Table<Product>,
}

impl Storekit {
    pub(crate) fn new(stores: &Stores) -> Result<Self, BoxError> {
        Ok(Self {
            kv: stores.kv(),
            auth: stores.auth(),
            products: Table::new(stores.tables(), products_schema()?),
        })
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

#[async_trait]
impl Products for Storekit {
    async fn create_products(&self) -> Result<(), BoxError> {
        self.products.ensure().await?;
        Ok(())
    }

    async fn drop_products(&self) -> Result<(), BoxError> {
        self.products.drop().await?;
        Ok(())
    }

    async fn insert_product(&self, product: &Product) -> Result<(), BoxError> {
        self.products.insert(product).await?;
        Ok(())
    }

    async fn get_product(&self, id: &str) -> Result<Option<Product>, BoxError> {
        Ok(self.products.get(id).await?.map(|found| found.record))
    }

    async fn update_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        self.products
            .update::<storekit::Error>(id, |product| {
                product.price_cents = price_cents;
                product.updated_at = updated_at;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn newest_products(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        let page = self
            .products
            .query(Query::index(NAME_INDEX, name).descending().limit(limit))
            .await?;
        let more = page.next.is_some();
        Ok((page.items.into_iter().map(|p| p.record).collect(), more))
    }

    async fn patch_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        let patch = Patch::new()
            .set("price_cents", price_cents)
            .set("updated_at", updated_at);
        self.products
            .store()
            .patch(
                self.products.schema(),
                &id.into(),
                &patch,
                None,
                Returning::None,
            )
            .await?;
        Ok(())
    }

    async fn newest_products_from(
        &self,
        name: &str,
        min_price: u64,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        let query = Query::index(NAME_INDEX, name)
            .descending()
            .limit(limit)
            .filter(Condition::ge("price_cents", min_price));
        let page = self.products.query(query).await?;
        let more = page.next.is_some();
        Ok((page.items.into_iter().map(|p| p.record).collect(), more))
    }
}
