//! [`KvBackend`] on the kv table: namespaces spread over shards, binary values, number counters,
//! and deadlines checked on every read.
//!
//! An item is `{pk: "{namespace}#{shard}", sk: key}` with either `v` (the value's bytes, or a
//! JSON value `set_json` wrote as a native document: see [`native_json`]) or `n` (a counter),
//! and with a TTL also `exp` (deadline, Unix ms) and `ttl` (Unix s, for native TTL: the
//! deadline plus the config's `keep_expired`, so that DynamoDB keeps an expired item
//! for as long as `get_stale` may read it). Counters read back as their decimal digits, so they look like any other value; a value
//! written as digits becomes a counter on its first increment, by a conditional write.
//!
//! # Exactly once under the SDK's retries
//!
//! When the answer to a write is lost after the write landed (a connection reset while it is
//! read, an attempt timeout), the SDK sends the same request again. A conditional write then
//! meets its own effect, so each one carries a token that is unique to the call and tells the
//! resend what happened:
//!
//! - `set_if_absent` and `compare_and_swap` store the token in `w` with the value. A resend
//!   refused by its condition asks for the stored item (`ReturnValuesOnConditionCheckFailure`,
//!   free) and answers `true` if it carries this call's token: the earlier attempt landed and
//!   is still what is stored. Cost: the attribute (33 bytes) on the item, no request.
//! - `increment` writes its result under an attribute named by its token,
//!   `i{token} = n + delta`, in the same UpdateItem as the addition, conditioned on that
//!   attribute not existing. A resend is refused by that condition and reads its result from
//!   the old item, so it never adds twice and answers what the first attempt computed, however
//!   many other increments landed in between (they have tokens of their own and leave this
//!   one alone). Once the call has its answer, and no attempt of it can still be sent, one
//!   more UpdateItem removes the attribute, so a counter carries only the tokens of increments
//!   in flight. Cost: 2 requests instead of 1 (a new counter: 3 instead of 2). Keeping the
//!   token for good would save that request but grow a hot counter by one attribute per
//!   increment; keeping only the last token would let an increment landing in between make
//!   the resend add again; a TransactWriteItems with a `ClientRequestToken` is deduplicated by
//!   the server but cannot return the new value, and reading it afterwards could see other
//!   increments, so two calls could answer the same number. A token left behind by a process
//!   that died in between is removed by the next increment of the key after 10 minutes.
//!
//! What this does not cover: a write that replaces or deletes the item (`set`, `delete`, a
//! swap) between the lost answer and the resend also removes the token, and the resend is then
//! judged like a new call.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures::stream::{self, BoxStream};
use futures::{StreamExt as _, TryStreamExt as _};
use storekit_core::backend::{Expiry, Items, Key, Keys, KvBackend, Namespace};
use storekit_core::kv::counter;
use storekit_core::time::{is_live, now_millis};
use storekit_core::transfer::{KvEntry, KvPosition, KvTransferBackend};
use storekit_core::{Result, async_trait, validate};

use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::{self, Item, PK, SK, s};
use crate::retry::Backoff;
use crate::txn::Condition;
use crate::{DynamoDbStore, batch, listing, tables};

/// The native TTL attribute: the deadline in Unix seconds.
pub(crate) const TTL: &str = "ttl";
const VALUE: &str = "v";
const COUNTER: &str = "n";
const EXPIRES: &str = "exp";
/// The token of the `set_if_absent` or `compare_and_swap` call that wrote the item.
const WRITER: &str = "w";
/// The first letter of the attribute an increment keeps while it runs: `i{token}`, its result.
const PENDING: &str = "i";
/// How old a pending increment's token must be before another increment removes it: far longer
/// than any call's retries, as long as DynamoDB keeps a transaction's request token.
const PENDING_STALE_MS: i64 = 10 * 60 * 1000;
/// Hex digits of a token, and of the time (Unix ms) it starts with.
const TOKEN_DIGITS: usize = 32;
const TOKEN_TIME_DIGITS: usize = 12;
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
pub(crate) fn partition(namespace: &str, shard: u16) -> String {
    format!("{namespace}#{shard}")
}

/// What an item holds.
pub(crate) enum Stored<'a> {
    Bytes(&'a [u8]),
    /// A JSON value written by `set_json`, as a native attribute (see [`native_json`]).
    Document(AttributeValue),
    Counter(i64),
}

/// The native attribute for the JSON encoding `json`, if DynamoDB can hold it so that every
/// read decodes to the same value: an object or array that follows the document rules
/// (numbers in DynamoDB's range, nesting, keys; see
/// [`validate::normalize_json_value_at_top`]), or a scalar whose JSON DynamoDB returns
/// unchanged (`5` but not `5.0`, which reads back as `5`: a counter or a compare-and-swap
/// then sees the same bytes as on other backends). `None`: store the bytes.
fn native_json(json: &[u8]) -> Option<AttributeValue> {
    let mut value: serde_json::Value = serde_json::from_slice(json).ok()?;
    validate::normalize_json_value_at_top("value", &mut value).ok()?;
    let document = matches!(
        value,
        serde_json::Value::Object(_) | serde_json::Value::Array(_)
    );
    if !document && serde_json::to_vec(&value).ok()? != json {
        return None;
    }
    Some(tables::item::attribute(&value))
}

/// A token naming one call: a UUID v7 in hex, whose first 48 bits are its start in Unix ms
/// (so a token left behind can be aged) and whose 74 random bits keep calls apart.
fn call_token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The attribute an increment with this token keeps its result in while it runs.
fn pending(token: &str) -> String {
    format!("{PENDING}{token}")
}

/// The start (Unix ms) of the increment that left the attribute `name`, if it is one.
fn pending_since(name: &str) -> Option<i64> {
    let token = name.strip_prefix(PENDING)?;
    if token.len() != TOKEN_DIGITS || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(token.get(..TOKEN_TIME_DIGITS)?, 16).ok()
}

/// The item has no live value: absent, or past its deadline.
fn absent_or_expired(now: i64) -> Condition {
    Condition::new("attribute_not_exists(#pk) OR #exp <= :now")
        .name("#pk", PK)
        .name("#exp", EXPIRES)
        .value(":now", item::n(now))
}

impl DynamoDbStore {
    pub(crate) fn shard_of(&self, key: &str) -> u16 {
        let shards = u64::from(self.config.shard_count());
        u16::try_from(fnv1a(key.as_bytes()) % shards).unwrap_or(0)
    }

    pub(crate) fn kv_key(&self, namespace: &str, key: &str) -> Item {
        item::key(partition(namespace, self.shard_of(key)), key)
    }

    /// A full item, with the attribute `mark` if given (a call's token), sized before it is
    /// sent.
    pub(crate) fn kv_item(
        &self,
        namespace: &str,
        key: &str,
        stored: &Stored<'_>,
        expires: Option<i64>,
        mark: Option<(String, AttributeValue)>,
    ) -> Result<Item> {
        let mut item = self.kv_key(namespace, key);
        match stored {
            Stored::Bytes(bytes) => {
                item.insert(VALUE.to_owned(), AttributeValue::B(Blob::new(*bytes)));
            }
            Stored::Document(value) => {
                item.insert(VALUE.to_owned(), value.clone());
            }
            Stored::Counter(n) => {
                item.insert(COUNTER.to_owned(), item::n(*n));
            }
        }
        if let Some(ms) = expires {
            item.insert(EXPIRES.to_owned(), item::n(ms));
            item.insert(TTL.to_owned(), item::n(self.native_ttl(ms)));
        }
        item.extend(mark);
        item::check_size(&item)?;
        Ok(item)
    }

    /// The native TTL (Unix s) of an item with deadline `ms`: never before the deadline plus
    /// what the store keeps expired items for.
    fn native_ttl(&self, ms: i64) -> i64 {
        let keep = i64::try_from(self.config.keep_expired().as_secs()).unwrap_or(i64::MAX);
        ms.div_euclid(1000).saturating_add(1).saturating_add(keep)
    }

    pub(crate) fn expires(&self, item: &Item) -> Result<Option<i64>> {
        item::get_i64(item, &self.kv_table, EXPIRES)
    }

    /// The value an item holds, unless it has expired.
    pub(crate) fn live_value(&self, item: &Item, now: i64) -> Result<Option<Vec<u8>>> {
        if !is_live(self.expires(item)?, now) {
            return Ok(None);
        }
        self.stored_value(item).map(Some)
    }

    /// The value an item holds, counters as their digits and documents as compact JSON,
    /// whatever its deadline.
    fn stored_value(&self, item: &Item) -> Result<Vec<u8>> {
        match (item.get(VALUE), item.get(COUNTER)) {
            (Some(AttributeValue::B(bytes)), _) => Ok(bytes.clone().into_inner()),
            // Written by `set_json`, or natively by another client of the table.
            (Some(document), _) => {
                let value = tables::item::json(document).map_err(|why| {
                    error::bad_item(&self.kv_table, format!("v is not a JSON value: {why}"))
                })?;
                serde_json::to_vec(&value)
                    .map_err(|e| error::bad_item(&self.kv_table, format!("v: {e}")))
            }
            (_, Some(_)) => item::get_i64(item, &self.kv_table, COUNTER)?
                .map(counter::encode)
                .ok_or_else(|| error::bad_item(&self.kv_table, "n is not a number")),
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
        Ok(request.send_counted().await.map_err(error::sdk)?.item)
    }

    /// Puts an item, under a condition if given. If the condition was not met, returns the
    /// item as stored (if any), so the caller can tell whether it was its own earlier attempt.
    async fn put_kv(
        &self,
        item: Item,
        condition: Option<&Condition>,
    ) -> Result<std::result::Result<(), Option<Item>>> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.kv_table)
            .set_item(Some(item));
        if let Some(condition) = condition {
            request = request
                .condition_expression(condition.expression())
                .set_expression_attribute_names(condition.names())
                .set_expression_attribute_values(condition.values())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        match request.send_counted().await {
            Ok(_) => Ok(Ok(())),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Err(failed.item().cloned().filter(|i| !i.is_empty())))
                }
                _ => Err(error::sdk(err)),
            },
        }
    }

    /// A conditional put by `set_if_absent` or `compare_and_swap` whose item carries `token`
    /// in [`WRITER`]: true if written, by this attempt or by an earlier attempt of the same
    /// call whose answer was lost (the stored item carries the token).
    async fn put_once(&self, item: Item, condition: &Condition, token: &str) -> Result<bool> {
        Ok(match self.put_kv(item, Some(condition)).await? {
            Ok(()) => true,
            Err(stored) => stored.is_some_and(
                |item| matches!(item.get(WRITER), Some(AttributeValue::S(t)) if t == token),
            ),
        })
    }

    /// A conditional put by `increment` whose item carries its result under `pending`: the
    /// result if written, by this attempt or by an earlier one whose answer was lost; else the
    /// item as stored.
    async fn put_counter(
        &self,
        item: Item,
        condition: &Condition,
        pending: &str,
        value: i64,
    ) -> Result<std::result::Result<i64, Option<Item>>> {
        match self.put_kv(item, Some(condition)).await? {
            Ok(()) => Ok(Ok(value)),
            Err(stored) => match self.own_result(stored.as_ref(), pending)? {
                Some(value) => Ok(Ok(value)),
                None => Ok(Err(stored)),
            },
        }
    }

    /// The result an earlier attempt of this increment left on the stored item, if it landed.
    fn own_result(&self, stored: Option<&Item>, pending: &str) -> Result<Option<i64>> {
        match stored {
            Some(item) => item::get_i64(item, &self.kv_table, pending),
            None => Ok(None),
        }
    }

    /// Removes the attribute this increment kept its result in, now that no attempt of it can
    /// be sent any more, with any that increments of dead processes left behind (`stale`).
    /// The increment has happened whatever this does, so a failure is logged, not returned:
    /// the next increment of the key removes the attribute once it is stale.
    async fn finish_increment(&self, namespace: &str, key: &str, pending: &str, stale: &[String]) {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(namespace, key)))
            // Without it, an item deleted meanwhile would come back holding only its key.
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#p0", pending);
        let mut expression = "REMOVE #p0".to_owned();
        for (i, name) in stale.iter().enumerate() {
            let placeholder = format!("#p{}", i + 1);
            expression.push_str(&format!(", {placeholder}"));
            request = request.expression_attribute_names(placeholder, name);
        }
        match request.update_expression(expression).send_counted().await {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) => {}
            Err(err) => {
                tracing::warn!(error = %err, "dynamodb: could not remove an increment's token");
            }
        }
    }

    /// Adds `delta` to a live counter in one UpdateItem, keeping the result under `pending`
    /// too. Returns the result (this attempt's, or an earlier attempt's whose answer was lost)
    /// and the stale pending attributes seen on the item; on a refused condition, the item as
    /// it was (if any), so the caller can tell why.
    async fn add_to_counter(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        now: i64,
        pending: &str,
    ) -> Result<std::result::Result<(i64, Vec<String>), Option<Item>>> {
        // The bound keeps the stored number within i64, which DynamoDB's 38 digits would not.
        let (bound_check, bound) = if delta >= 0 {
            ("#n <= :bound", i64::MAX - delta)
        } else {
            ("#n >= :bound", i64::MIN - delta)
        };
        // Both right-hand sides read the counter as it was before this update.
        let condition = format!(
            "attribute_not_exists(#mine) AND attribute_exists(#n) \
             AND (attribute_not_exists(#exp) OR #exp > :now) AND {bound_check}"
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(namespace, key)))
            .update_expression("SET #n = #n + :delta, #mine = #n + :delta")
            .condition_expression(condition)
            .expression_attribute_names("#n", COUNTER)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_names("#mine", pending)
            .expression_attribute_values(":delta", item::n(delta))
            .expression_attribute_values(":now", item::n(now))
            .expression_attribute_values(":bound", item::n(bound))
            // The whole item, to see tokens left behind; it costs no capacity.
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send_counted()
            .await;
        match result {
            Ok(output) => {
                let attributes = output.attributes.unwrap_or_default();
                let value =
                    item::get_i64(&attributes, &self.kv_table, pending)?.ok_or_else(|| {
                        error::bad_item(&self.kv_table, "the update returned no result")
                    })?;
                let stale = attributes
                    .keys()
                    .filter(|name| {
                        pending_since(name).is_some_and(|since| since < now - PENDING_STALE_MS)
                    })
                    .cloned()
                    .collect();
                Ok(Ok((value, stale)))
            }
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let stored = failed.item().cloned().filter(|i| !i.is_empty());
                    match self.own_result(stored.as_ref(), pending)? {
                        Some(value) => Ok(Ok((value, Vec::new()))),
                        None => Ok(Err(stored)),
                    }
                }
                _ => Err(error::sdk(err)),
            },
        }
    }

    /// One page of a shard's items (key and deadline only), and where to continue.
    pub(crate) fn shard_query(
        &self,
        namespace: &str,
        shard: u16,
        prefix: &str,
    ) -> QueryFluentBuilder {
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

/// Items of a batch built between two yields to the runtime: building one (its key, a map, its
/// size checked) takes microseconds, tens in a debug build, so a batch of 100,000 built at once
/// would hold the thread that polls it for 100 ms or more.
const BUILT_PER_YIELD: usize = 250;

/// Lets the runtime run other tasks before every chunk of a batch but the first, so that a
/// batch of one chunk costs nothing more.
async fn yield_between(chunk: usize) {
    if chunk > 0 {
        tokio::task::yield_now().await;
    }
}

/// Keeps the first occurrence of each key, in order.
fn distinct<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|key| seen.insert(*key)).collect()
}

#[async_trait]
impl KvBackend for DynamoDbStore {
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        match self.read_kv(&namespace, &key, false).await? {
            Some(item) => self.live_value(&item, now_millis()),
            None => Ok(None),
        }
    }

    async fn set(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        let item = self.kv_item(
            &namespace,
            &key,
            &Stored::Bytes(value),
            expiry.millis(),
            None,
        )?;
        self.put_kv(item, None).await.map(drop)
    }

    async fn set_json(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        json: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        let expires = expiry.millis();
        let native = native_json(json).and_then(|document| {
            // Laid out as a document, a value can outgrow the item (`[0,0,...]` takes three
            // bytes an element, not two): it is then stored as the bytes, which always fit.
            self.kv_item(&namespace, &key, &Stored::Document(document), expires, None)
                .ok()
        });
        let item = match native {
            Some(item) => item,
            None => self.kv_item(&namespace, &key, &Stored::Bytes(json), expires, None)?,
        };
        self.put_kv(item, None).await.map(drop)
    }

    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let old = self
            .client
            .delete_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(&namespace, &key)))
            .return_values(ReturnValue::AllOld)
            .send_counted()
            .await
            .map_err(error::sdk)?
            .attributes
            .filter(|item| !item.is_empty());
        match old {
            Some(item) => Ok(is_live(self.expires(&item)?, now_millis())),
            None => Ok(false),
        }
    }

    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        match self.read_kv(&namespace, &key, true).await? {
            Some(item) => Ok(is_live(self.expires(&item)?, now_millis())),
            None => Ok(false),
        }
    }

    async fn get_many(
        &self,
        namespace: Namespace<'_>,
        keys: Keys<'_>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let unique = distinct(keys.iter().copied());
        let wanted = unique
            .iter()
            .map(|key| self.kv_key(&namespace, key))
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
        namespace: Namespace<'_>,
        items: Items<'_>,
        expiry: Expiry,
    ) -> Result<()> {
        let expires = expiry.millis();
        // DynamoDB refuses a batch naming a key twice; the last value of a key wins, so the
        // items are walked from the end and a key is written at the first occurrence seen.
        // Every item is built (and its size checked) before any is sent.
        let mut seen = HashSet::with_capacity(items.len());
        let mut requests = Vec::with_capacity(items.len());
        for (chunk, part) in items.rchunks(BUILT_PER_YIELD).enumerate() {
            yield_between(chunk).await;
            for (key, value) in part.iter().rev() {
                if seen.insert(*key) {
                    let item =
                        self.kv_item(&namespace, key, &Stored::Bytes(value), expires, None)?;
                    requests.push(batch::put_request(item)?);
                }
            }
        }
        batch::write_all(&self.client, &self.kv_table, requests).await
    }

    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()> {
        let mut seen = HashSet::with_capacity(keys.len());
        let mut requests = Vec::with_capacity(keys.len());
        for (chunk, part) in keys.chunks(BUILT_PER_YIELD).enumerate() {
            yield_between(chunk).await;
            for key in part {
                if seen.insert(*key) {
                    requests.push(batch::delete_request(self.kv_key(&namespace, key))?);
                }
            }
        }
        batch::write_all(&self.client, &self.kv_table, requests).await
    }

    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>> {
        listing::keys(self, &namespace, prefix)
    }

    async fn clear(&self, namespace: Namespace<'_>) -> Result<()> {
        stream::iter(0..self.config.shard_count())
            .map(|shard| self.clear_shard(&namespace, shard))
            .buffer_unordered(SHARD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn set_if_absent(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let now = now_millis();
        let (item, token) = self.written_once(&namespace, &key, value, expiry)?;
        self.put_once(item, &absent_or_expired(now), &token).await
    }

    async fn compare_and_swap(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let now = now_millis();
        let (item, token) = self.written_once(&namespace, &key, new, expiry)?;
        // A counter reads back as its digits, so digits in their canonical form also match it.
        let as_counter = counter::parse(expected)
            .ok()
            .filter(|n| counter::encode(*n) == expected);
        // A value `set_json` stored as a document matches the JSON of an equal value, as
        // written or as read back (DynamoDB compares maps and lists by value).
        let as_document = native_json(expected);
        let holds = match (as_counter.is_some(), as_document.is_some()) {
            (true, true) => "(#v = :expected OR #v = :expected_doc OR #n = :expected_n)",
            (true, false) => "(#v = :expected OR #n = :expected_n)",
            (false, true) => "(#v = :expected OR #v = :expected_doc)",
            (false, false) => "#v = :expected",
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
        if let Some(document) = as_document {
            condition = condition.value(":expected_doc", document);
        }
        self.put_once(item, &condition, &token).await
    }

    async fn increment(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        // One token for the whole call: whichever of its writes lands, a resend of it, or a
        // later write of the same call, finds the result there.
        let pending = pending(&call_token());
        let (value, stale) = self
            .increment_once(&namespace, &key, delta, expiry.millis(), &pending)
            .await?;
        self.finish_increment(&namespace, &key, &pending, &stale)
            .await;
        Ok(value)
    }

    async fn purge_expired(&self) -> Result<u64> {
        // Native TTL deletes expired items; reads already ignore them (see the crate docs).
        Ok(0)
    }

    async fn set_expiry(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expiry: Expiry,
    ) -> Result<bool> {
        // One UpdateItem, conditioned on a live item: the value is not sent again, and an
        // item that expired (or was deleted) meanwhile is left alone, never brought back.
        let mut request = self
            .client
            .update_item()
            .table_name(&self.kv_table)
            .set_key(Some(self.kv_key(&namespace, &key)))
            .condition_expression(
                "attribute_exists(#pk) AND (attribute_not_exists(#exp) OR #exp > :now)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", item::n(now_millis()));
        request = match expiry.millis() {
            Some(ms) => request
                .update_expression("SET #exp = :exp, #ttl = :ttl")
                .expression_attribute_values(":exp", item::n(ms))
                .expression_attribute_values(":ttl", item::n(self.native_ttl(ms))),
            None => request.update_expression("REMOVE #exp, #ttl"),
        };
        match request.send_counted().await {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(error::sdk(err)),
        }
    }

    async fn get_stored(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        match self.read_kv(&namespace, &key, false).await? {
            Some(item) => Ok(Some((self.stored_value(&item)?, self.expires(&item)?))),
            None => Ok(None),
        }
    }

    fn keep_expired(&self) -> std::time::Duration {
        self.config.keep_expired()
    }
}

impl DynamoDbStore {
    /// The item a `set_if_absent` or `compare_and_swap` writes, carrying a new call token in
    /// [`WRITER`], and that token.
    fn written_once(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<(Item, String)> {
        let token = call_token();
        let mark = (WRITER.to_owned(), s(&token));
        let item = self.kv_item(
            namespace,
            key,
            &Stored::Bytes(value),
            expiry.millis(),
            Some(mark),
        )?;
        Ok((item, token))
    }
}

impl DynamoDbStore {
    /// The work of [`KvBackend::increment`], every write carrying the call's result under
    /// `pending`: the result, and the stale pending attributes seen on the item.
    async fn increment_once(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        new_expiry: Option<i64>,
        pending: &str,
    ) -> Result<(i64, Vec<String>)> {
        let mark = |value: i64| Some((pending.to_owned(), item::n(value)));
        let mut backoff = Backoff::contention();
        loop {
            let now = now_millis();
            let stored = match self
                .add_to_counter(namespace, key, delta, now, pending)
                .await?
            {
                Ok(done) => return Ok(done),
                Err(stored) => stored,
            };
            let live = match stored {
                Some(item) if is_live(self.expires(&item)?, now) => Some(item),
                _ => None,
            };
            let written = match live {
                // Absent or expired: a new counter at `delta`, with the new TTL.
                None => {
                    let item = self.kv_item(
                        namespace,
                        key,
                        &Stored::Counter(delta),
                        new_expiry,
                        mark(delta),
                    )?;
                    let condition = absent_or_expired(now);
                    if let Ok(value) = self.put_counter(item, &condition, pending, delta).await? {
                        return Ok((value, Vec::new()));
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
                    let unchanged = unchanged_value(item.get(VALUE), expires, now);
                    let item = self.kv_item(
                        namespace,
                        key,
                        &Stored::Counter(value),
                        expires,
                        mark(value),
                    )?;
                    if let Ok(value) = self.put_counter(item, &unchanged, pending, value).await? {
                        return Ok((value, Vec::new()));
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
}

/// The item still holds `value` (its stored attribute: bytes, or a number `set_json` wrote)
/// with deadline `expires`, and is live.
fn unchanged_value(value: Option<&AttributeValue>, expires: Option<i64>, now: i64) -> Condition {
    let condition = Condition::new(match expires {
        Some(_) => "#v = :old AND #exp = :exp AND #exp > :now",
        None => "#v = :old AND attribute_not_exists(#exp)",
    })
    .name("#v", VALUE)
    .name("#exp", EXPIRES)
    .value(
        ":old",
        value
            .cloned()
            .unwrap_or_else(|| AttributeValue::B(Blob::new(Vec::new()))),
    );
    match expires {
        Some(ms) => condition
            .value(":exp", item::n(ms))
            .value(":now", item::n(now)),
        None => condition,
    }
}

/// Copying kv items out and in, for `storekit copy`:
///
/// | call | requests |
/// |---|---|
/// | `export_kv` | all namespaces: Scan of the kv table from the position's item key; one namespace: Query per shard, from the position's shard and key. Either reads until `limit` live items or the end |
/// | `import_kv` | BatchWriteItem puts, 25 per call, a few calls in flight, unprocessed items resent with backoff |
///
/// Scan order is fixed for a table, and a Scan started at an item's key continues after it
/// whether or not that item still exists, so a page's last item is a position the next page
/// resumes from without repeats. Expired items that native TTL has not deleted yet are
/// skipped, and each item's deadline is read from `exp`, its exact millisecond.
#[async_trait]
impl KvTransferBackend for DynamoDbStore {
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        match namespace {
            Some(namespace) => self.export_namespace(&namespace, after, limit).await,
            None => self.export_all(after, limit).await,
        }
    }

    async fn import_kv(&self, items: &[KvEntry]) -> Result<()> {
        let requests = items
            .iter()
            .map(|entry| {
                let item = self.kv_item(
                    &entry.namespace,
                    &entry.key,
                    &Stored::Bytes(&entry.value),
                    entry.expires_at,
                    None,
                )?;
                batch::put_request(item)
            })
            .collect::<Result<Vec<_>>>()?;
        batch::write_all(&self.client, &self.kv_table, requests).await
    }
}

impl DynamoDbStore {
    /// The entry of a kv item, or `None` if it has expired.
    fn entry_of(&self, item: &Item, now: i64) -> Result<Option<KvEntry>> {
        let Some(value) = self.live_value(item, now)? else {
            return Ok(None);
        };
        let partition = item::get_s(item, &self.kv_table, PK)?;
        // The shard is after the last `#`; the namespace may hold `#`s of its own.
        let (namespace, _shard) = partition
            .rsplit_once('#')
            .ok_or_else(|| error::bad_item(&self.kv_table, "a pk without a shard"))?;
        Ok(Some(KvEntry {
            namespace: namespace.to_owned(),
            key: item::get_s(item, &self.kv_table, SK)?.to_owned(),
            value,
            expires_at: self.expires(item)?,
        }))
    }

    /// Every namespace: a Scan from the position's item.
    async fn export_all(&self, after: Option<&KvPosition>, limit: usize) -> Result<Vec<KvEntry>> {
        let now = now_millis();
        let mut start = after.map(|p| self.kv_key(&p.namespace, &p.key));
        let mut entries = Vec::new();
        loop {
            let wanted = i32::try_from(limit - entries.len()).unwrap_or(i32::MAX);
            let output = self
                .client
                .scan()
                .table_name(&self.kv_table)
                .consistent_read(true)
                .limit(wanted)
                .set_exclusive_start_key(start)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            for item in output.items() {
                entries.extend(self.entry_of(item, now)?);
                if entries.len() == limit {
                    return Ok(entries);
                }
            }
            match output.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => return Ok(entries),
            }
        }
    }

    /// One namespace: its shards in order, each a Query in key order, from the position's
    /// shard and key.
    async fn export_namespace(
        &self,
        namespace: &str,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        if after.is_some_and(|p| p.namespace != namespace) {
            return Err(storekit_core::Error::invalid(
                "after",
                "the position is in another namespace than the one exported",
            ));
        }
        let now = now_millis();
        let first = after.map_or(0, |p| self.shard_of(&p.key));
        let mut start = after.map(|p| self.kv_key(&p.namespace, &p.key));
        let mut entries = Vec::new();
        for shard in first..self.config.shard_count() {
            loop {
                let wanted = i32::try_from(limit - entries.len()).unwrap_or(i32::MAX);
                let query = self
                    .client
                    .query()
                    .table_name(&self.kv_table)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_values(":pk", s(partition(namespace, shard)))
                    .limit(wanted);
                let (page, next) = batch::query_page(query, start.take()).await?;
                for item in &page {
                    entries.extend(self.entry_of(item, now)?);
                    if entries.len() == limit {
                        return Ok(entries);
                    }
                }
                match next {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(entries)
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
    fn pending_tokens_are_aged_by_their_start() {
        let before = now_millis();
        let name = pending(&call_token());
        let since = pending_since(&name).unwrap_or_default();
        assert!(
            since >= before && since <= now_millis(),
            "{since} vs {before}"
        );
        for other in [PK, SK, VALUE, COUNTER, EXPIRES, TTL, WRITER, "i", "ix"] {
            assert_eq!(pending_since(other), None, "{other}");
        }
        assert_ne!(call_token(), call_token());
    }

    #[test]
    fn json_is_native_only_where_it_reads_back_alike() {
        let native = |json: &str| native_json(json.as_bytes());
        assert!(matches!(
            native(r#"{"b":1,"a":[2.0]}"#),
            Some(AttributeValue::M(_))
        ));
        assert!(matches!(native("[]"), Some(AttributeValue::L(_))));
        assert_eq!(native("12"), Some(AttributeValue::N("12".into())));
        assert_eq!(native(r#""x""#), Some(AttributeValue::S("x".into())));
        assert_eq!(native("null"), Some(AttributeValue::Null(true)));
        // DynamoDB would hand these back otherwise than written, or not hold them at all.
        for bytes in [
            "2.0",
            "1e300",
            r#"{"":1}"#,
            r#"[1e-131]"#,
            "1 ",
            r#""\u0041""#,
            "not json",
        ] {
            assert_eq!(native(bytes), None, "{bytes}");
        }
    }

    #[test]
    fn partitions_keep_namespaces_apart() {
        assert_ne!(partition("a#1", 2), partition("a", 12));
        assert_eq!(partition("ns", 3), "ns#3");
    }
}
