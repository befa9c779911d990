//! Request accounting: every request a store operation sends goes out through
//! [`Counted::send_counted`] instead of the SDK's `send`. It counts the request into the span
//! of the store call (see [`storekit_core::trace::count_request`]): pages, batch rounds and this
//! crate's retries each count once; a request that failed counts without capacity. Attempts the
//! SDK itself retries inside one `send` count as one request.
//!
//! While that span is recorded, the request also asks DynamoDB for the capacity it consumes
//! (`ReturnConsumedCapacity::Total`), which the span shows. Untraced, it does not ask: the span
//! is the only place the figure goes, and DynamoDB Local measured ~10% slower per PutItem when
//! asked (the service sizes the item for the answer and the answer is longer).
//!
//! Schema requests of `migrate` and `drop_tables` (the schema module) and
//! [`crate::DynamoDbStore::dump`] are not store operations and keep the plain `send`; the tables
//! store's `ensure_table` and `drop_table` are, and count their table requests (with no
//! capacity) like any other.

use std::future::Future;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use storekit_core::trace::count_request;

/// A request of a store operation, sent so that it is counted.
pub(crate) trait Counted {
    /// The operation's output.
    type Output;
    /// The operation's error.
    type Error;

    /// Asks for the consumed capacity, sends the request, and counts it.
    fn send_counted(
        self,
    ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, HttpResponse>>> + Send;
}

/// What a request asks of `ReturnConsumedCapacity`: the total while the current span (the
/// store call's, which `Call::run` enters when it is recorded) is recorded, else nothing.
fn capacity_wanted() -> Option<ReturnConsumedCapacity> {
    (!tracing::Span::current().is_disabled()).then_some(ReturnConsumedCapacity::Total)
}

/// The capacity units of a response: one entry for a single-item request, one per table for
/// batches and transactions; `None` if DynamoDB reported none.
fn total<'a>(consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) -> Option<f64> {
    consumed
        .into_iter()
        .filter_map(ConsumedCapacity::capacity_units)
        .reduce(|a, b| a + b)
}

/// Implements [`Counted`] for the fluent builders of these operations.
macro_rules! counted {
    ($($module:ident: $builder:ident, $output:ident, $error:ident;)*) => {$(
        impl Counted for operation::$module::builders::$builder {
            type Output = operation::$module::$output;
            type Error = operation::$module::$error;

            async fn send_counted(
                self,
            ) -> Result<Self::Output, SdkError<Self::Error, HttpResponse>> {
                let sent = self
                    .set_return_consumed_capacity(capacity_wanted())
                    .send()
                    .await;
                count_request(
                    sent.as_ref()
                        .ok()
                        .and_then(|output| total(output.consumed_capacity())),
                );
                sent
            }
        }
    )*};
}

/// Implements [`Counted`] for operations that consume no capacity (table management), which
/// the tables store's `ensure_table` and `drop_table` send as part of their calls.
macro_rules! counted_without_capacity {
    ($($module:ident: $builder:ident, $output:ident, $error:ident;)*) => {$(
        impl Counted for operation::$module::builders::$builder {
            type Output = operation::$module::$output;
            type Error = operation::$module::$error;

            async fn send_counted(
                self,
            ) -> Result<Self::Output, SdkError<Self::Error, HttpResponse>> {
                let sent = self.send().await;
                count_request(None);
                sent
            }
        }
    )*};
}

counted_without_capacity! {
    describe_table: DescribeTableFluentBuilder, DescribeTableOutput, DescribeTableError;
    create_table: CreateTableFluentBuilder, CreateTableOutput, CreateTableError;
    update_table: UpdateTableFluentBuilder, UpdateTableOutput, UpdateTableError;
    delete_table: DeleteTableFluentBuilder, DeleteTableOutput, DeleteTableError;
    list_tables: ListTablesFluentBuilder, ListTablesOutput, ListTablesError;
}

counted! {
    get_item: GetItemFluentBuilder, GetItemOutput, GetItemError;
    put_item: PutItemFluentBuilder, PutItemOutput, PutItemError;
    update_item: UpdateItemFluentBuilder, UpdateItemOutput, UpdateItemError;
    delete_item: DeleteItemFluentBuilder, DeleteItemOutput, DeleteItemError;
    query: QueryFluentBuilder, QueryOutput, QueryError;
    scan: ScanFluentBuilder, ScanOutput, ScanError;
    batch_get_item: BatchGetItemFluentBuilder, BatchGetItemOutput, BatchGetItemError;
    batch_write_item: BatchWriteItemFluentBuilder, BatchWriteItemOutput, BatchWriteItemError;
    transact_write_items: TransactWriteItemsFluentBuilder, TransactWriteItemsOutput,
        TransactWriteItemsError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_adds_up_over_tables_and_is_none_when_unreported() {
        let units = |u: f64| ConsumedCapacity::builder().capacity_units(u).build();
        assert_eq!(total([&units(0.5), &units(1.0)]), Some(1.5));
        assert_eq!(total(Some(&units(2.0))), Some(2.0));
        assert_eq!(total(None::<&ConsumedCapacity>), None);
        assert_eq!(total(&[ConsumedCapacity::builder().build()]), None);
    }
}
