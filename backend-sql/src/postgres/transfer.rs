//! Copying a PostgreSQL store out and in (`storekit copy`): the kv, user and table parts live
//! beside the rest of each store's code; this only assembles them.

use async_trait::async_trait;
use storekit_core::backend::Namespace;
use storekit_core::table::{Row, TableSchema, TableShape};
use storekit_core::transfer::{KvEntry, KvPosition, StoredToken, TransferBackend, UserBundle};
use storekit_core::{Result, UserId};

use super::PostgresStore;

#[async_trait]
impl TransferBackend for PostgresStore {
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        self.export_kv_page(namespace.map(|n| n.as_str()), after, limit)
            .await
    }

    async fn import_kv(&self, items: &[KvEntry]) -> Result<()> {
        self.import_kv_items(items).await
    }

    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        self.tokens_of(user).await
    }

    async fn import_user(&self, bundle: &UserBundle) -> Result<()> {
        self.import_bundle(bundle).await
    }

    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>> {
        self.catalog_shapes().await
    }

    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()> {
        self.import_rows(schema, rows).await
    }
}
