//! Batches of records (issue 21, item 6): `BatchWriteItem` of 25 requests, unprocessed items
//! resent ([`crate::batch::write_all`]); not atomic past one call, as the kv batches.
//!
//! A put bumps each record's version, which `BatchWriteItem` cannot compute (it takes no
//! condition or update expression): the versions are read first with `BatchGetItem`
//! (consistent, 100 keys a call). A record written by someone else between that read and the
//! batch is overwritten. A table with unique indexes keeps markers that only a transaction
//! may move, so there a batch is one ordinary write per record, in order.

use storekit_core::Result;
use storekit_core::table::{RecordKey, Row, TableSchema, next_version};

use super::item;
use crate::DynamoDbStore;
use crate::batch::{delete_request, put_request, write_all};
use crate::tables::write::Expect;

impl DynamoDbStore {
    /// Writes the rows (distinct keys); returns their versions in order.
    pub(super) async fn put_rows(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
        if !schema.uniques().is_empty() {
            let mut versions = Vec::with_capacity(rows.len());
            for row in rows {
                versions.push(self.write_row(schema, row, Expect::Any).await?);
            }
            return Ok(versions);
        }
        let table = self.table_name(schema);
        let keys: Vec<RecordKey> = rows.iter().map(|row| row.key().clone()).collect();
        let current = self.get_records(schema, &keys).await?;
        let mut versions = Vec::with_capacity(rows.len());
        let mut requests = Vec::with_capacity(rows.len());
        for (row, current) in rows.iter().zip(current) {
            let version = next_version(current.map_or(0, |record| record.version))?;
            requests.push(put_request(item::record_item(schema, row, version)?)?);
            versions.push(version);
        }
        write_all(&self.client, &table, requests).await?;
        Ok(versions)
    }

    /// Deletes the records at these distinct keys.
    pub(super) async fn delete_records(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<()> {
        if !schema.uniques().is_empty() {
            for key in keys {
                self.delete_record(schema, key, None).await?;
            }
            return Ok(());
        }
        let table = self.table_name(schema);
        let requests = keys
            .iter()
            .map(|key| delete_request(item::key_item(schema, key)))
            .collect::<Result<Vec<_>>>()?;
        write_all(&self.client, &table, requests).await
    }
}
