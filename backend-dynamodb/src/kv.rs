//! [`KvStore`] on the kv table: namespaces spread over shards, binary values, number counters,
//! and deadlines checked on every read.
//!
//! An item is `{pk: "{namespace}#{shard}", sk: key}` with either `v` (the value's bytes) or `n`
//! (a counter), and with a TTL also `exp` (deadline, Unix ms) and `ttl` (Unix s, for native
//! TTL). Counters read back as their decimal digits, so they look like any other value; a value
//! written as digits becomes a counter on its first increment, by a conditional write.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures::stream::{self, BoxStream};
use futures::{StreamExt as _, TryStreamExt as _};
use storekit_core::kv::counter;
use storekit_core::time::{expiry_millis, is_live, now_millis};
use storekit_core::{KvStore, Result, async_trait, validate};

use crate::error::{self, DynamoError};
use crate::item::{self, Item, PK, SK, s};
use crate::retry::Backoff;
use crate::txn::Condition;
use crate::{DynamoDbStore, batch};

/// The native TTL attribute: the deadline in Unix seconds.
pub(crate) const TTL: &str = "ttl";
const VALUE: &str = "v";
const COUNTER: &str = "n";
const EXPIRES: &str = "exp";
/// Shards of one namespace listed or cleared at once.
const SHARD_CONCURRENCY: usize = 4;

/// FNV-1a, 64 bits: tiny, stable across versions and platforms (it decides where items live,
/// so it must never change), and spreads short keys well enough to balance shards.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The partition holding `key`: the shard suffix is the text after the last `#`, so it never
/// mixes with `#`s in the namespace.
fn partition(namespace: &str, shard: u16) -> String {
    format!("{namespace}#{shard}")
}

/// What an item holds.
enum Stored<'a> {
    Bytes(&'a [u8]),
    Counter(i64),
}

/// The item has no live value: absent, or past its deadline.
fn absent_or_expired(now: i64) -> Condition {
    Condition::new("attribute_not_exists(#pk) OR #exp <= :now")
        .name("#pk", PK)
        .name("#exp", EXPIRES)
        .value(":now", item::n(now))
}

impl DynamoDbStore {
    fn shard_of(&self, key: &str) -> u16 {
        let shards = u64::from(self.config.shard_count());
        u16::try_from(fnv1a(key.as_bytes()) % shards).unwrap_or(0)
    }

    fn kv_key(&self, namespace: &str, key: &str) -> Item {
        item::key(partition(namespace, self.shard_of(key)), key)
    }

    /// A full item, sized before it is sent.
    fn kv_item(
        &self,
        namespace: &str,
        key: &str,
        stored: &Stored<'_>,
        expires: Option<i64>,
    ) -> Result<Item> {
        let mut item = self.kv_key(namespace, key);
        match stored {
            Stored::Bytes(bytes) => {
                item.insert(VALUE.to_owned(), AttributeValue::B(Blob::new(*bytes)));
            }
            Stored::Counter(n) => {
                item.insert(COUNTER.to_owned(), item::n(*n));
            }
        }
        if let Some(ms) = expires {
            item.insert(EXPIRES.to_owned(), item::n(ms));
            item.insert(TTL.to_owned(), item::n(ms.div_euclid(1000) + 1));
        }
        item::check_size(&item)?;
        Ok(item)
    }

    fn expires(&self, item: &Item) -> Result<Option<i64>> {
        item::get_i64(item, &self.kv_table, EXPIRES)
    }

    /// The value an item holds, unless it has expired.
    fn live_value(&self, item: &Item, now: i64) -> Result<Option<Vec<u8>>> {
        if !is_live(self.expires(item)?, now) {
            return Ok(None);
        }
        match (item.get(VALUE), item.get(COUNTER)) {
            (Some(AttributeValue::B(bytes)), _) => Ok(Some(bytes.clone().into_inner())),
            (_, Some(_)) => Ok(item::get_i64(item, &self.kv_table, COUNTER)?.map(counter::encode)),
            _ => Err(error::bad_item(
                &self.kv_table,
                "item holds neither v nor n",
            )),
        }
    }

    async fn read_kv(&self, namespace: &str, key: &str, key_only: bool) -> Result<Option<Item>> {
        let mut request = self
            .client
            .get_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(namespace, key)))
            .consistent_read(true);
        if key_only {
            // `contains` needs only to know the item is there and live.
            request = request
                .projection_expression("#sk, #exp")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#exp", EXPIRES);
        }
        Ok(request.send().await.map_err(error::sdk)?.item)
    }

    /// Puts an item, under a condition if given; false if the condition was not met.
    async fn put_kv(&self, item: Item, condition: Option<&Condition>) -> Result<bool> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.kv_table)
            .set_item(Some(item));
        if let Some(condition) = condition {
            request = request
                .condition_expression(condition.expression())
                .set_expression_attribute_names(condition.names())
                .set_expression_attribute_values(condition.values());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(error::sdk(err)),
        }
    }

    /// Adds `delta` to a live counter in one UpdateItem. On a refused condition, returns the
    /// item as it was (if any), so the caller can tell why.
    async fn add_to_counter(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        now: i64,
    ) -> Result<std::result::Result<i64, Option<Item>>> {
        // The bound keeps the stored number within i64, which DynamoDB's 38 digits would not.
        let (bound_check, bound) = if delta >= 0 {
            ("#n <= :bound", i64::MAX - delta)
        } else {
            ("#n >= :bound", i64::MIN - delta)
        };
        let condition = format!(
            "attribute_exists(#n) AND (attribute_not_exists(#exp) OR #exp > :now) AND {bound_check}"
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(namespace, key)))
            .update_expression("ADD #n :delta")
            .condition_expression(condition)
            .expression_attribute_names("#n", COUNTER)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_values(":delta", item::n(delta))
            .expression_attribute_values(":now", item::n(now))
            .expression_attribute_values(":bound", item::n(bound))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let attributes = output.attributes.unwrap_or_default();
                let value = item::get_i64(&attributes, &self.kv_table, COUNTER)?
                    .ok_or_else(|| error::bad_item(&self.kv_table, "ADD returned no counter"))?;
                Ok(Ok(value))
            }
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Err(failed.item().cloned().filter(|i| !i.is_empty())))
                }
                _ => Err(error::sdk(err)),
            },
        }
    }

    /// One page of a shard's items (key and deadline only), and where to continue.
    fn shard_query(&self, namespace: &str, shard: u16, prefix: &str) -> QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.kv_table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_values(":pk", s(partition(namespace, shard)))
            .projection_expression("#pk, #sk, #exp");
        if prefix.is_empty() {
            query.key_condition_expression("#pk = :pk")
        } else {
            query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
        }
    }

    /// Deletes every item of one shard of a namespace, a page at a time.
    async fn clear_shard(&self, namespace: &str, shard: u16) -> Result<()> {
        let mut start = None;
        loop {
            let (items, next) =
                batch::query_page(self.shard_query(namespace, shard, ""), start).await?;
            let deletes = items
                .into_iter()
                .map(|item| {
                    let sk = item::get_s(&item, &self.kv_table, SK)?;
                    batch::delete_request(item::key(partition(namespace, shard), sk))
                })
                .collect::<Result<Vec<_>>>()?;
            batch::write_all(&self.client, &self.kv_table, deletes).await?;
            match next {
                Some(key) => start = Some(key),
                None => return Ok(()),
            }
        }
    }
}

/// Keeps the first occurrence of each key, in order.
fn distinct<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|key| seen.insert(*key)).collect()
}

/// Where a [`KvStore::keys`] listing is: which shard, and where in it.
struct Listing {
    shard: u16,
    start: Option<Item>,
}

#[async_trait]
impl KvStore for DynamoDbStore {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate::check_keys(namespace, &[key])?;
        match self.read_kv(namespace, key, false).await? {
            Some(item) => self.live_value(&item, now_millis()),
            None => Ok(None),
        }
    }

    async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        validate::check_entry(namespace, key, value)?;
        let item = self.kv_item(namespace, key, &Stored::Bytes(value), expiry_millis(ttl)?)?;
        self.put_kv(item, None).await.map(drop)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        let old = self
            .client
            .delete_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(namespace, key)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(error::sdk)?
            .attributes
            .filter(|item| !item.is_empty());
        match old {
            Some(item) => Ok(is_live(self.expires(&item)?, now_millis())),
            None => Ok(false),
        }
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        match self.read_kv(namespace, key, true).await? {
            Some(item) => Ok(is_live(self.expires(&item)?, now_millis())),
            None => Ok(false),
        }
    }

    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        validate::check_keys(namespace, keys)?;
        let unique = distinct(keys.iter().copied());
        let wanted = unique
            .iter()
            .map(|key| self.kv_key(namespace, key))
            .collect();
        let items = batch::get_all(&self.client, &self.kv_table, wanted, None).await?;
        let now = now_millis();
        let mut found = HashMap::with_capacity(items.len());
        for item in items {
            if let Some(value) = self.live_value(&item, now)? {
                found.insert(item::get_s(&item, &self.kv_table, SK)?.to_owned(), value);
            }
        }
        Ok(keys.iter().map(|key| found.get(*key).cloned()).collect())
    }

    async fn set_many(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        ttl: Option<Duration>,
    ) -> Result<()> {
        for (key, value) in items {
            validate::check_entry(namespace, key, value)?;
        }
        let expires = expiry_millis(ttl)?;
        // DynamoDB refuses a batch naming a key twice; the last value of a key wins.
        let last: HashMap<&str, &[u8]> = items.iter().copied().collect();
        let requests = distinct(items.iter().map(|(key, _)| *key))
            .into_iter()
            .map(|key| {
                let value = last.get(key).copied().unwrap_or_default();
                let item = self.kv_item(namespace, key, &Stored::Bytes(value), expires)?;
                batch::put_request(item)
            })
            .collect::<Result<Vec<_>>>()?;
        batch::write_all(&self.client, &self.kv_table, requests).await
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
        validate::check_keys(namespace, keys)?;
        let requests = distinct(keys.iter().copied())
            .into_iter()
            .map(|key| batch::delete_request(self.kv_key(namespace, key)))
            .collect::<Result<Vec<_>>>()?;
        batch::write_all(&self.client, &self.kv_table, requests).await
    }

    fn keys<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> BoxStream<'a, Result<String>> {
        if let Err(e) = validate::check_namespace(namespace).and(validate::check_prefix(prefix)) {
            return stream::once(async { Err(e) }).boxed();
        }
        let first = Listing {
            shard: 0,
            start: None,
        };
        // One page is fetched each time the stream runs dry, shard after shard.
        stream::try_unfold(first, move |listing| async move {
            if listing.shard >= self.config.shard_count() {
                return Ok::<_, storekit_core::Error>(None);
            }
            let query = self.shard_query(namespace, listing.shard, prefix);
            let (items, next) = batch::query_page(query, listing.start).await?;
            let now = now_millis();
            let mut keys = Vec::with_capacity(items.len());
            for item in &items {
                if is_live(self.expires(item)?, now) {
                    keys.push(Ok::<_, storekit_core::Error>(
                        item::get_s(item, &self.kv_table, SK)?.to_owned(),
                    ));
                }
            }
            let following = match next {
                Some(start) => Listing {
                    shard: listing.shard,
                    start: Some(start),
                },
                None => Listing {
                    shard: listing.shard + 1,
                    start: None,
                },
            };
            Ok(Some((stream::iter(keys), following)))
        })
        .try_flatten()
        .boxed()
    }

    async fn clear(&self, namespace: &str) -> Result<()> {
        validate::check_namespace(namespace)?;
        stream::iter(0..self.config.shard_count())
            .map(|shard| self.clear_shard(namespace, shard))
            .buffer_unordered(SHARD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn set_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        validate::check_entry(namespace, key, value)?;
        let item = self.kv_item(namespace, key, &Stored::Bytes(value), expiry_millis(ttl)?)?;
        self.put_kv(item, Some(&absent_or_expired(now_millis())))
            .await
    }

    async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        validate::check_entry(namespace, key, new)?;
        let item = self.kv_item(namespace, key, &Stored::Bytes(new), expiry_millis(ttl)?)?;
        let now = now_millis();
        let Some(expected) = expected else {
            return self.put_kv(item, Some(&absent_or_expired(now))).await;
        };
        // A counter reads back as its digits, so digits in their canonical form also match it.
        let as_counter = counter::parse(expected)
            .ok()
            .filter(|n| counter::encode(*n) == expected);
        let holds = if as_counter.is_some() {
            "(#v = :expected OR #n = :expected_n)"
        } else {
            "#v = :expected"
        };
        let mut condition = Condition::new(format!(
            "{holds} AND (attribute_not_exists(#exp) OR #exp > :now)"
        ))
        .name("#v", VALUE)
        .name("#exp", EXPIRES)
        .value(":expected", AttributeValue::B(Blob::new(expected)))
        .value(":now", item::n(now));
        if let Some(n) = as_counter {
            condition = condition
                .name("#n", COUNTER)
                .value(":expected_n", item::n(n));
        }
        self.put_kv(item, Some(&condition)).await
    }

    async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        validate::check_keys(namespace, &[key])?;
        let new_expiry = expiry_millis(ttl)?;
        let mut backoff = Backoff::contention();
        loop {
            let now = now_millis();
            let stored = match self.add_to_counter(namespace, key, delta, now).await? {
                Ok(value) => return Ok(value),
                Err(stored) => stored,
            };
            let live = match stored {
                Some(item) if is_live(self.expires(&item)?, now) => Some(item),
                _ => None,
            };
            let written = match live {
                // Absent or expired: a new counter at `delta`, with the new TTL.
                None => {
                    let item = self.kv_item(namespace, key, &Stored::Counter(delta), new_expiry)?;
                    if self.put_kv(item, Some(&absent_or_expired(now))).await? {
                        return Ok(delta);
                    }
                    false
                }
                // A live counter that refused the bound: the sum would overflow.
                Some(item) if item.contains_key(COUNTER) => {
                    let current = self.live_value(&item, now)?;
                    counter::add(current.as_deref(), delta)?;
                    false
                }
                // A live value: digits become a counter, keeping their expiry; others fail.
                Some(item) => {
                    let current = self.live_value(&item, now)?;
                    let value = counter::add(current.as_deref(), delta)?;
                    let expires = self.expires(&item)?;
                    let unchanged =
                        unchanged_value(current.as_deref().unwrap_or_default(), expires, now);
                    let item = self.kv_item(namespace, key, &Stored::Counter(value), expires)?;
                    if self.put_kv(item, Some(&unchanged)).await? {
                        return Ok(value);
                    }
                    false
                }
            };
            // Another writer got there first: look again.
            if !written && !backoff.wait().await {
                return Err(DynamoError::Contention {
                    attempts: backoff.failures(),
                }
                .into());
            }
        }
    }

    async fn purge_expired(&self) -> Result<u64> {
        // Native TTL deletes expired items; reads already ignore them (see the crate docs).
        Ok(0)
    }
}

/// The item still holds `value` with deadline `expires`, and is live.
fn unchanged_value(value: &[u8], expires: Option<i64>, now: i64) -> Condition {
    let condition = Condition::new(match expires {
        Some(_) => "#v = :old AND #exp = :exp AND #exp > :now",
        None => "#v = :old AND attribute_not_exists(#exp)",
    })
    .name("#v", VALUE)
    .name("#exp", EXPIRES)
    .value(":old", AttributeValue::B(Blob::new(value)));
    match expires {
        Some(ms) => condition
            .value(":exp", item::n(ms))
            .value(":now", item::n(now)),
        None => condition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_hash_never_changes() {
        // Items live where this hash puts them: changing it would lose every stored item.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn partitions_keep_namespaces_apart() {
        assert_ne!(partition("a#1", 2), partition("a", 12));
        assert_eq!(partition("ns", 3), "ns#3");
    }
}
