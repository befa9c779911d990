//! What both drivers' configurations and stores share: the setters of the settings every SQL
//! store has, and `Admin` through the stores' inherent methods.

/// The setters of the settings both configurations have (`table_prefix`, `id_kind`,
/// `purge_interval`, `keep_expired`), inside the configuration's `impl` block.
macro_rules! shared_setters {
    () => {
        /// Sets the table prefix.
        #[must_use]
        pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.table_prefix = prefix.into();
            self
        }

        /// Sets the kind of user ids.
        #[must_use]
        pub fn id_kind(mut self, kind: IdKind) -> Self {
            self.id_kind = kind;
            self
        }

        /// Sets how often expired key-value items are deleted in the background (`None`: never).
        #[must_use]
        pub fn purge_interval(mut self, interval: Option<std::time::Duration>) -> Self {
            self.purge_interval = interval;
            self
        }

        /// Sets how long expired key-value items are kept after their deadline.
        #[must_use]
        pub fn keep_expired(mut self, keep: std::time::Duration) -> Self {
            self.keep_expired = keep;
            self
        }
    };
}

/// `Admin` for `$store` through its inherent methods of the same names, which stay so that
/// code holding the store calls them without importing `Admin`.
macro_rules! admin_through_inherent {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl storekit_core::admin::Admin for $store {
            async fn migrate_report(&self) -> Result<storekit_core::admin::MigrationReport> {
                $store::migrate_report(self).await
            }

            async fn schema_differences(
                &self,
            ) -> Result<Vec<storekit_core::admin::SchemaDifference>> {
                $store::schema_differences(self).await
            }

            async fn drop_tables(&self) -> Result<()> {
                $store::drop_tables(self).await
            }

            async fn dump(&self) -> Result<String> {
                $store::dump(self).await
            }
        }
    };
}

pub(crate) use {admin_through_inherent, shared_setters};
