//! Copying a store out and in (`storekit copy`): the kv, user and table parts live beside the
//! rest of each store's code, under the same names on both stores; [`transfer_backend!`]
//! only assembles them.

/// Implements `TransferBackend` for a store of this crate from its inherent methods
/// `export_kv_page`, `import_kv_items`, `tokens_of`, `import_bundle`, `catalog_shapes` and
/// `import_rows`.
macro_rules! transfer_backend {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl storekit_core::transfer::TransferBackend for $store {
            async fn export_kv(
                &self,
                namespace: Option<storekit_core::backend::Namespace<'_>>,
                after: Option<&storekit_core::transfer::KvPosition>,
                limit: usize,
            ) -> storekit_core::Result<Vec<storekit_core::transfer::KvEntry>> {
                self.export_kv_page(namespace.map(|n| n.as_str()), after, limit)
                    .await
            }

            async fn import_kv(
                &self,
                items: &[storekit_core::transfer::KvEntry],
            ) -> storekit_core::Result<()> {
                self.import_kv_items(items).await
            }

            async fn access_tokens_of(
                &self,
                user: storekit_core::UserId,
            ) -> storekit_core::Result<Vec<storekit_core::transfer::StoredToken>> {
                self.tokens_of(user).await
            }

            async fn import_user(
                &self,
                bundle: &storekit_core::transfer::UserBundle,
            ) -> storekit_core::Result<()> {
                self.import_bundle(bundle).await
            }

            async fn list_tables(
                &self,
            ) -> storekit_core::Result<Vec<(String, storekit_core::table::TableShape)>> {
                self.catalog_shapes().await
            }

            async fn import_records(
                &self,
                schema: &storekit_core::table::TableSchema,
                rows: &[(storekit_core::table::Row, u64)],
            ) -> storekit_core::Result<()> {
                self.import_rows(schema, rows).await
            }
        }
    };
}

pub(crate) use transfer_backend;
