//! Conditional writes and transactions, and how their refusals are read.
//!
//! A refused condition is reported as [`Outcome::ConditionFailed`] with the index of the action
//! whose condition failed and, where the action asked for it, the item as it was, taken from
//! the server's cancellation reasons: callers map that to `AlreadyExists`, `NotFound` or
//! `Conflict` from the server's answer, never from a read made beforehand. Transactions
//! cancelled only because another transaction held an item (or by throttling) are retried
//! with backoff, as are single writes refused with `TransactionConflictException`.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use storekit_core::{Error, Result};

use crate::count::Counted as _;
use crate::error::{self, BACKEND};
use crate::item::{Item, PK};
use crate::retry::Backoff;

/// How a conditional write ended, when it did not fail outright.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Everything was written.
    Done,
    /// The condition of action `index` was not met; nothing was written.
    ConditionFailed {
        /// Which action's condition failed, in the order they were given.
        index: usize,
        /// That item as stored, if the action asked for it and it exists.
        item: Option<Item>,
    },
}

/// The most actions one TransactWriteItems call may hold.
pub(crate) const MAX_ACTIONS: usize = 100;

/// Cancellation reason codes after which the same transaction may succeed.
const RETRYABLE_REASONS: &[&str] = &[
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

/// Runs the actions as one TransactWriteItems call.
pub(crate) async fn transact(client: &Client, actions: Vec<TransactWriteItem>) -> Result<Outcome> {
    transact_once(client, actions, None).await
}

/// Runs the actions as one TransactWriteItems call with `token` as its `ClientRequestToken`,
/// so that a resend of these very actions (by the SDK's retries, or the retries here after a
/// conflict) within DynamoDB's ten minutes cannot apply them twice. A token belongs to one set
/// of actions: DynamoDB refuses it with other ones.
pub(crate) async fn transact_once(
    client: &Client,
    actions: Vec<TransactWriteItem>,
    token: Option<&str>,
) -> Result<Outcome> {
    let mut backoff = Backoff::contention();
    loop {
        let Err(err) = client
            .transact_write_items()
            .set_transact_items(Some(actions.clone()))
            .set_client_request_token(token.map(str::to_owned))
            .send_counted()
            .await
        else {
            return Ok(Outcome::Done);
        };
        let retry = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                let reasons = cancelled.cancellation_reasons();
                if let Some(index) = reasons
                    .iter()
                    .position(|r| r.code() == Some("ConditionalCheckFailed"))
                {
                    let item = reasons.get(index).and_then(|r| r.item().cloned());
                    return Ok(Outcome::ConditionFailed { index, item });
                }
                reasons
                    .iter()
                    .any(|r| r.code().is_some_and(|c| RETRYABLE_REASONS.contains(&c)))
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
            _ => false,
        };
        if !retry {
            return Err(error::sdk(err));
        }
        tracing::debug!(error = %err, "dynamodb transaction cancelled by a conflict, retrying");
        if !backoff.wait().await {
            return Err(Error::unavailable(BACKEND, err));
        }
    }
}

/// Sends a single-item write, retrying while DynamoDB refuses it because a transaction holds
/// the item (`TransactionConflictException`); other outcomes are returned as they are.
pub(crate) async fn retry_conflicts<T, E, F, Fut>(
    mut send: F,
) -> std::result::Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata,
{
    let mut backoff = Backoff::contention();
    loop {
        match send().await {
            Err(err) if err.code() == Some("TransactionConflictException") => {
                if !backoff.wait().await {
                    return Err(err);
                }
            }
            other => return other,
        }
    }
}

/// A condition expression with its placeholders.
///
/// Every attribute is named through a `#placeholder`, so no attribute name can collide with
/// one of DynamoDB's several hundred reserved words.
#[derive(Debug, Clone, Default)]
pub(crate) struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Condition {
    /// A condition; name its attributes with [`Condition::name`] and its values with
    /// [`Condition::value`].
    pub(crate) fn new(expression: impl Into<String>) -> Self {
        Self {
            expression: expression.into(),
            ..Self::default()
        }
    }

    /// The item exists.
    pub(crate) fn exists() -> Self {
        Self::new("attribute_exists(#pk)").name("#pk", PK)
    }

    /// No item has this key.
    pub(crate) fn absent() -> Self {
        Self::new("attribute_not_exists(#pk)").name("#pk", PK)
    }

    /// Binds `#placeholder` to an attribute name.
    pub(crate) fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
        self
    }

    /// Binds `:placeholder` to a value.
    pub(crate) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    /// The expression.
    pub(crate) fn expression(&self) -> String {
        self.expression.clone()
    }

    /// The names, or `None` when there are none (DynamoDB refuses an empty map).
    pub(crate) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// The values, or `None` when there are none (DynamoDB refuses an empty map).
    pub(crate) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// A transactional put of `item` under `condition`; the stored item comes back in the
/// cancellation reason if the condition fails.
pub(crate) fn put(table: &str, item: Item, condition: &Condition) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition.expression())
        .set_expression_attribute_names(condition.names())
        .set_expression_attribute_values(condition.values())
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A transactional put of `item`, whatever is stored.
pub(crate) fn put_any(table: &str, item: Item) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A transactional delete of `key` under `condition`.
pub(crate) fn delete(table: &str, key: Item, condition: &Condition) -> Result<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .condition_expression(condition.expression())
        .set_expression_attribute_names(condition.names())
        .set_expression_attribute_values(condition.values())
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// A transactional delete of `key`, whether or not it exists.
pub(crate) fn delete_any(table: &str, key: Item) -> Result<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// A transaction action that checks, without writing, that `condition` holds on `key`; the
/// stored item comes back in the cancellation reason if it does not.
pub(crate) fn check(table: &str, key: Item, condition: &Condition) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key))
        .condition_expression(condition.expression())
        .set_expression_attribute_names(condition.names())
        .set_expression_attribute_values(condition.values())
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// A transactional update of `key` by `expression` under `condition`; the placeholders of both
/// are bound in `condition`.
pub(crate) fn update(
    table: &str,
    key: Item,
    expression: &str,
    condition: &Condition,
) -> Result<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .condition_expression(condition.expression())
        .set_expression_attribute_names(condition.names())
        .set_expression_attribute_values(condition.values())
        .build()
        .map_err(error::build)?;
    Ok(TransactWriteItem::builder().update(update).build())
}
