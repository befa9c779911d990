//! Copying a store out and in (`storekit copy`): the kv, user and table parts live beside the
//! rest of each store's code, under the same names on both stores; [`transfer_backend!`]
//! only assembles them.

/// Implements `TransferBackend` for a store of this crate from its inherent methods
/// `export_kv_page`, `import_kv_items`, `tokens_of`, `import_bundle`, `catalog_shapes` and
/// `import_rows`.
macro_rules! transfer_backend {
    ($store:ty) => {
        // A block of its own, so that the imports stay out of the driver's module.
        const _: () = {
            use storekit_core::backend::Namespace;
            use storekit_core::table::{Row, TableSchema, TableShape};
            use storekit_core::transfer::{
                KvEntry, KvPosition, StoredToken, TransferBackend, UserBundle,
            };
            use storekit_core::{Result, UserId};

            #[async_trait::async_trait]
            impl TransferBackend for $store {
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

                async fn import_records(
                    &self,
                    schema: &TableSchema,
                    rows: &[(Row, u64)],
                ) -> Result<()> {
                    self.import_rows(schema, rows).await
                }
            }
        };
    };
}

pub(crate) use transfer_backend;
