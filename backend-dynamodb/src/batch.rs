//! Batches at DynamoDB's maximum sizes, and Query pagination.
//!
//! [`get_all`] sends BatchGetItem calls of 100 keys and [`write_all`] BatchWriteItem calls of 25
//! requests, a few calls at a time. Items the service hands back unprocessed (throttling, or the
//! 16 MB response cap) are sent again with exponential backoff and jitter; rounds that make no
//! progress are bounded, after which the call fails with [`storekit_core::Error::Unavailable`].
//! Callers pass distinct keys: DynamoDB refuses a batch that names one key twice.
//! [`query_page`] is one page of a Query; callers loop on its `next` key to the end.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit_core::Result;

use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::Item;
use crate::retry::Backoff;

/// The most keys one BatchGetItem call may name.
pub(crate) const GET_BATCH: usize = 100;
/// The most requests one BatchWriteItem call may hold.
pub(crate) const WRITE_BATCH: usize = 25;
/// Batch calls in flight at once for one operation.
const CONCURRENCY: usize = 4;

/// Reads the items with these distinct keys (strongly consistent); absent items are left out.
pub(crate) async fn get_all(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: Option<(&str, &HashMap<String, String>)>,
) -> Result<Vec<Item>> {
    get_all_at(client, table, keys, projection, true).await
}

/// [`get_all`], strongly consistent or not (`ConsistentRead`).
pub(crate) async fn get_all_at(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    projection: Option<(&str, &HashMap<String, String>)>,
    consistent: bool,
) -> Result<Vec<Item>> {
    let pages: Vec<Vec<Item>> = stream::iter(chunks_of(keys, GET_BATCH))
        .map(|chunk| get_chunk(client, table, chunk, projection, consistent))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(pages.into_iter().flatten().collect())
}

async fn get_chunk(
    client: &Client,
    table: &str,
    mut keys: Vec<Item>,
    projection: Option<(&str, &HashMap<String, String>)>,
    consistent: bool,
) -> Result<Vec<Item>> {
    let mut found = Vec::with_capacity(keys.len());
    let mut backoff = Backoff::batch();
    loop {
        let sent = keys.len();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(consistent);
        if let Some((expression, names)) = projection {
            request = request
                .projection_expression(expression)
                .set_expression_attribute_names(Some(names.clone()));
        }
        let output = client
            .batch_get_item()
            .request_items(table, request.build().map_err(error::build)?)
            .send_counted()
            .await
            .map_err(error::sdk)?;
        if let Some(mut responses) = output.responses {
            found.extend(responses.remove(table).unwrap_or_default());
        }
        keys = output
            .unprocessed_keys
            .and_then(|mut tables| tables.remove(table))
            .map(|rest| rest.keys)
            .unwrap_or_default();
        if keys.is_empty() {
            return Ok(found);
        }
        retry_unprocessed(&mut backoff, sent, keys.len()).await?;
    }
}

/// Sends these write requests (puts or deletes of distinct keys).
pub(crate) async fn write_all(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<()> {
    stream::iter(chunks_of(requests, WRITE_BATCH))
        .map(|chunk| async move {
            // A call is built, serialised and signed when it is first polled; the stream
            // starts several at once, so each waits for its own turn of the runtime first.
            tokio::task::yield_now().await;
            write_chunk(client, table, chunk).await
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn write_chunk(client: &Client, table: &str, mut requests: Vec<WriteRequest>) -> Result<()> {
    let mut backoff = Backoff::batch();
    loop {
        let sent = requests.len();
        let output = client
            .batch_write_item()
            .request_items(table, requests)
            .send_counted()
            .await
            .map_err(error::sdk)?;
        requests = output
            .unprocessed_items
            .and_then(|mut tables| tables.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        retry_unprocessed(&mut backoff, sent, requests.len()).await?;
    }
}

/// `all`, moved (never copied) into vectors of `size`, one when asked for: a batch of 100,000
/// items is not cloned whole before its first call, and its calls start at once.
fn chunks_of<T>(all: Vec<T>, size: usize) -> impl Iterator<Item = Vec<T>> {
    let mut all = all.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<T> = all.by_ref().take(size).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// Waits before resending what came back; only rounds without progress count toward the bound,
/// because a partly processed batch (e.g. at the 16 MB response cap) is not a failing server.
async fn retry_unprocessed(backoff: &mut Backoff, sent: usize, left: usize) -> Result<()> {
    if left < sent {
        backoff.reset();
    }
    tracing::debug!(sent, left, "dynamodb batch items unprocessed, retrying");
    if backoff.wait().await {
        Ok(())
    } else {
        Err(DynamoError::Unprocessed {
            count: left,
            attempts: backoff.failures(),
        }
        .into())
    }
}

/// One page of a (strongly consistent) Query, and the key to continue from, if any.
pub(crate) async fn query_page(
    query: QueryFluentBuilder,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>)> {
    let output = query
        .consistent_read(true)
        .set_exclusive_start_key(start)
        .send_counted()
        .await
        .map_err(error::sdk)?;
    let next = output.last_evaluated_key.filter(|key| !key.is_empty());
    Ok((output.items.unwrap_or_default(), next))
}

/// Every item a Query matches, following pagination to the end.
pub(crate) async fn query_all(query: QueryFluentBuilder) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let (page, next) = query_page(query.clone(), start).await?;
        items.extend(page);
        match next {
            Some(key) => start = Some(key),
            None => return Ok(items),
        }
    }
}

/// A BatchWriteItem request deleting `key`.
pub(crate) fn delete_request(key: Item) -> Result<WriteRequest> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key))
        .build()
        .map_err(error::build)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

/// A BatchWriteItem request putting `item`.
pub(crate) fn put_request(item: Item) -> Result<WriteRequest> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(error::build)?;
    Ok(WriteRequest::builder().put_request(put).build())
}
