//! Unique indexes as marker items in the store's shared marker table.
//!
//! A value held in a unique index is one item, `pk = {table}#{index}#{values}`, `sk = UNIQUE`,
//! whose `holder` is the key of the record holding it. Table and index names cannot hold `#`,
//! and each value is written as a type letter, its length and `:` before it (`t5:hello`,
//! `i2:-7`, `b4:AAE=`, `f3:1.5`), so two different value lists never share a key. The record's
//! key is written the same way in `holder`.
//!
//! Markers are claimed (`attribute_not_exists(pk) OR holder = :me`) and released in the same
//! TransactWriteItems as the record's write (see the tables' write module), so a marker exists
//! exactly while its record holds the value. A marker whose holder no longer holds the value can
//! only come from another client writing the table; [`DynamoDbStore::clear_stale_marker`] removes
//! it when a write meets it.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{StreamExt as _, stream};
use storekit_core::table::{KeyDef, KeyType, KeyValue, Record, RecordKey, TableSchema};
use storekit_core::{Error, Result};

use super::{Placeholders, at_version, item};
use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::{Item, PK, SK, s};
use crate::retry::Backoff;
use crate::txn::{self, Condition, Outcome};
use crate::{DynamoDbStore, item as items};

/// The sort key of every marker.
const MARKER_SK: &str = "UNIQUE";
/// The marker attribute naming the record that holds the value.
const HOLDER: &str = "holder";
/// Records whose markers are written at once while a unique index is built.
const BACKFILL_CONCURRENCY: usize = 8;

/// Writes values unambiguously: a type letter, the length of the value's text, `:`, the text.
fn encode(values: &[&KeyValue]) -> String {
    let mut out = String::new();
    for value in values {
        let (tag, text) = match value {
            KeyValue::Text(text) => ('t', text.clone()),
            KeyValue::Int(int) => ('i', int.to_string()),
            KeyValue::Bytes(bytes) => ('b', STANDARD.encode(bytes)),
            KeyValue::Float(_) => ('f', value.to_json().to_string()),
        };
        out.push(tag);
        out.push_str(&text.len().to_string());
        out.push(':');
        out.push_str(&text);
    }
    out
}

/// Reads what [`encode`] wrote.
fn decode(mut text: &str) -> Option<Vec<KeyValue>> {
    let mut values = Vec::new();
    while !text.is_empty() {
        let tag = text.chars().next()?;
        let (len, rest) = text.get(tag.len_utf8()..)?.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let body = rest.get(..len)?;
        values.push(match tag {
            't' => KeyValue::Text(body.to_owned()),
            'i' => KeyValue::Int(body.parse().ok()?),
            'b' => KeyValue::Bytes(STANDARD.decode(body).ok()?),
            'f' => KeyValue::Float(body.parse().ok()?),
            _ => return None,
        });
        text = &rest[len..];
    }
    Some(values)
}

/// A record key as a marker's `holder` names it.
pub(super) fn holder(key: &RecordKey) -> String {
    encode(
        &std::iter::once(&key.partition)
            .chain(&key.sort)
            .collect::<Vec<_>>(),
    )
}

/// The record key a marker's `holder` names.
fn holder_key(text: &str) -> Option<RecordKey> {
    let mut values = decode(text)?.into_iter();
    let key = RecordKey {
        partition: values.next()?,
        sort: values.next(),
    };
    values.next().is_none().then_some(key)
}

/// The key of the marker of `values` in the unique index at `index`.
pub(super) fn marker_key(schema: &TableSchema, index: usize, values: &[KeyValue]) -> Item {
    let pk = format!(
        "{}#{}#{}",
        schema.name(),
        schema.uniques()[index].name(),
        encode(&values.iter().collect::<Vec<_>>())
    );
    items::key(pk, MARKER_SK)
}

/// The `pk` prefix of every marker of a table.
pub(super) fn markers_prefix(schema: &TableSchema) -> String {
    format!("{}#", schema.name())
}

/// The marker of `values`, held by `key`.
pub(super) fn marker_item(
    schema: &TableSchema,
    index: usize,
    values: &[KeyValue],
    key: &RecordKey,
) -> Item {
    let mut item = marker_key(schema, index, values);
    item.insert(HOLDER.to_owned(), s(holder(key)));
    item
}

/// The marker is free, or already held by `key`.
pub(super) fn free_or_held_by(key: &RecordKey) -> Condition {
    Condition::new("attribute_not_exists(#pk) OR #holder = :holder")
        .name("#pk", PK)
        .name("#holder", HOLDER)
        .value(":holder", s(holder(key)))
}

/// The holder a marker item names, if it can be read.
pub(super) fn holder_of(marker: &Item) -> Option<RecordKey> {
    match marker.get(HOLDER) {
        Some(AttributeValue::S(text)) => holder_key(text),
        _ => None,
    }
}

impl DynamoDbStore {
    /// The record holding `values` in unique index `index`: the marker, then its holder, both
    /// read consistently; the holder is returned only if it still holds the values.
    pub(super) async fn get_by_marker(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        // A missing record table is reported as such, rather than as an absent marker.
        let table = self.table_name(schema);
        let marker = self
            .client
            .get_item()
            .table_name(&self.unique_table)
            .set_key(Some(marker_key(schema, index, values)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        let Some(marker) = marker else {
            // No marker is also what a dropped table leaves behind (its markers go with it):
            // ask the record table, so that a missing table is `NotFound` here as it is for
            // every other call.
            self.probe_table(schema).await?;
            return Ok(None);
        };
        let key = holder_of(&marker)
            .ok_or_else(|| error::bad_item(&self.unique_table, "a marker without a holder"))?;
        schema
            .check_key(&key)
            .map_err(|e| error::bad_item(&table, e))?;
        let record = self.get_record(schema, &key).await?;
        Ok(record
            .filter(|r| item::unique_values(schema, &r.document)[index].as_deref() == Some(values)))
    }

    /// Fails with [`Error::NotFound`] (`"table"`) when the record table does not exist: one
    /// eventually consistent `GetItem` of a key no record need hold, reading only that key.
    async fn probe_table(&self, schema: &TableSchema) -> Result<()> {
        let probe = |def: &KeyDef| match def.kind() {
            KeyType::Text => KeyValue::from("storekit-probe"),
            KeyType::Int => KeyValue::Int(0),
            KeyType::Float => KeyValue::Float(0.0),
            KeyType::Bytes => KeyValue::Bytes(vec![0]),
        };
        let key = RecordKey {
            partition: probe(schema.partition()),
            sort: schema.sort().map(probe),
        };
        let mut p = Placeholders::default();
        let projection = p.name(schema.partition().field());
        self.client
            .get_item()
            .table_name(self.table_name(schema))
            .set_key(Some(item::key_item(schema, &key)))
            .projection_expression(projection)
            .set_expression_attribute_names(p.names())
            .send_counted()
            .await
            .map_err(error::sdk)?;
        Ok(())
    }

    /// Called when the marker of `values` is held by another record (`taker`, from the refused
    /// write's answer): `false` if that record holds the values, so they are taken; `true` if it
    /// does not, after removing the marker (in a transaction conditioned on the record as read),
    /// so the write can be tried again.
    pub(super) async fn clear_stale_marker(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
        taker: Option<&Item>,
    ) -> Result<bool> {
        let table = self.table_name(schema);
        // The marker was released meanwhile, or its holder cannot be read: try again, and a
        // second refusal comes back here with a fresh answer.
        let Some(holder) = taker
            .and_then(holder_of)
            .filter(|key| schema.check_key(key).is_ok())
        else {
            return Ok(taker.is_none());
        };
        let stored = self.get_item(schema, &holder).await?;
        let record_unchanged = match &stored {
            Some(stored) => {
                let record = item::record(schema, &table, stored)?;
                if item::unique_values(schema, &record.document)[index].as_deref() == Some(values) {
                    return Ok(false);
                }
                at_version(schema, record.version)
            }
            None => super::absent(schema),
        };
        tracing::debug!(
            table = schema.name(),
            index = schema.uniques()[index].name(),
            "removing a unique marker whose record no longer holds its value"
        );
        let actions = vec![
            txn::check(&table, item::key_item(schema, &holder), &record_unchanged)?,
            txn::delete(
                &self.unique_table,
                marker_key(schema, index, values),
                &Condition::new("#holder = :holder")
                    .name("#holder", HOLDER)
                    .value(":holder", s(self::holder(&holder))),
            )?,
        ];
        // Refused: the record or the marker changed since they were read; the write that
        // called this tries again either way.
        txn::transact(&self.client, actions).await?;
        Ok(true)
    }

    /// Builds the unique indexes at `positions` from the table's records: each record's
    /// markers are claimed in a transaction conditioned on the record as scanned, so a record
    /// written meanwhile is read again rather than leaving a marker for a value it no longer
    /// holds. Two records holding one value are [`Error::AlreadyExists`], once every claim
    /// of the page has finished (none is left in flight), so that the caller can delete the
    /// markers claimed so far and leave nothing behind.
    pub(super) async fn backfill(&self, schema: &TableSchema, positions: &[usize]) -> Result<()> {
        let table = self.table_name(schema);
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            let claims: Vec<Result<()>> = stream::iter(output.items.unwrap_or_default())
                .map(|item| self.claim_markers_of(schema, &table, positions, item))
                .buffer_unordered(BACKFILL_CONCURRENCY)
                .collect()
                .await;
            claims.into_iter().collect::<Result<Vec<()>>>()?;
            match output.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => return Ok(()),
            }
        }
    }

    async fn claim_markers_of(
        &self,
        schema: &TableSchema,
        table: &str,
        positions: &[usize],
        mut stored: Item,
    ) -> Result<()> {
        let mut backoff = Backoff::contention();
        loop {
            let record = item::record(schema, table, &stored)?;
            let values = item::unique_values(schema, &record.document);
            let mut actions = vec![txn::check(
                table,
                item::key_item(schema, &record.key),
                &at_version(schema, record.version),
            )?];
            let mut claimed = Vec::new();
            for &u in positions {
                if let Some(v) = &values[u] {
                    actions.push(txn::put(
                        &self.unique_table,
                        marker_item(schema, u, v, &record.key),
                        &free_or_held_by(&record.key),
                    )?);
                    claimed.push(u);
                }
            }
            if claimed.is_empty() {
                return Ok(());
            }
            match txn::transact(&self.client, actions).await? {
                Outcome::Done => return Ok(()),
                // Written or deleted since the scan: claim for the record as it is now.
                Outcome::ConditionFailed { index: 0, .. } => {
                    match self.get_item(schema, &record.key).await? {
                        Some(now) => stored = now,
                        None => return Ok(()),
                    }
                }
                Outcome::ConditionFailed { index, item } => {
                    let u = claimed[index - 1];
                    let Some(v) = &values[u] else { continue };
                    if !self.clear_stale_marker(schema, u, v, item.as_ref()).await? {
                        return Err(Error::AlreadyExists {
                            what: "unique value",
                        });
                    }
                }
            }
            if !backoff.wait().await {
                return Err(DynamoError::Contention {
                    attempts: backoff.failures(),
                }
                .into());
            }
        }
    }

    /// Deletes every marker of a table, or of its unique index at `index` (a Scan of the
    /// marker table, then BatchWriteItem).
    pub(super) async fn delete_markers_of(
        &self,
        schema: &TableSchema,
        index: Option<usize>,
    ) -> Result<()> {
        let mut p = Placeholders::default();
        let pk = p.name(PK);
        let prefix = match index {
            Some(u) => format!("{}{}#", markers_prefix(schema), schema.uniques()[u].name()),
            None => markers_prefix(schema),
        };
        let prefix = p.value(s(prefix));
        let sk = p.name(SK);
        let marker = p.value(s(MARKER_SK));
        let filter = format!("begins_with({pk}, {prefix}) AND {sk} = {marker}");
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.unique_table)
                .consistent_read(true)
                .filter_expression(&filter)
                .projection_expression(format!("{pk}, {sk}"))
                .set_expression_attribute_names(p.names())
                .set_expression_attribute_values(p.values())
                .set_exclusive_start_key(start)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            keys.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let requests = keys
            .into_iter()
            .map(crate::batch::delete_request)
            .collect::<Result<Vec<_>>>()?;
        crate::batch::write_all(&self.client, &self.unique_table, requests).await
    }

    /// A record's item, read consistently.
    pub(super) async fn get_item(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<Item>> {
        let table = self.table_name(schema);
        Ok(self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(item::key_item(schema, key)))
            .consistent_read(true)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_unambiguously_and_read_back() {
        let a = [KeyValue::from("a#b"), KeyValue::from("c")];
        let b = [KeyValue::from("a"), KeyValue::from("b#c")];
        let ea = encode(&a.iter().collect::<Vec<_>>());
        let eb = encode(&b.iter().collect::<Vec<_>>());
        assert_ne!(ea, eb);
        assert_eq!(decode(&ea), Some(a.to_vec()));
        let mixed = [
            KeyValue::Int(-7),
            KeyValue::Bytes(vec![0, 1, 255]),
            KeyValue::Float(1.5),
            KeyValue::from("é:1"),
        ];
        assert_eq!(
            decode(&encode(&mixed.iter().collect::<Vec<_>>())),
            Some(mixed.to_vec())
        );
        let key = RecordKey::with_sort("p", 3);
        assert_eq!(holder_key(&holder(&key)), Some(key));
        assert_eq!(decode("t9:short"), None);
    }
}
