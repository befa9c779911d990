//! The one place where DynamoDB's failures become storekit's [`Error`].
//!
//! SDK errors are classified once: throttling, timeouts and failures to reach the service are
//! [`Error::Unavailable`] (retrying may help), everything else is [`Error::Backend`]. Either way
//! the SDK error is kept whole as the source, never turned into a string. Failures that are
//! storekit's own (a batch that kept coming back unprocessed, a malformed stored item) are
//! [`DynamoError`] and convert the same way.

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use storekit_core::Error;

/// The backend name in every error.
pub(crate) const BACKEND: &str = "dynamodb";

/// Service error codes after which a later attempt may succeed.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ThrottlingException",
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Failures that storekit itself detects while talking to DynamoDB.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DynamoError {
    /// A batch still had unprocessed items after every retry.
    #[error("{count} items stayed unprocessed after {attempts} attempts (throttled?)")]
    Unprocessed { count: usize, attempts: u32 },

    /// An optimistic write lost to concurrent writers on every attempt.
    #[error("gave up after {attempts} attempts lost to concurrent writers")]
    Contention { attempts: u32 },

    /// A stored item does not have the shape this crate writes.
    #[error("malformed item in table {table}: {why}")]
    BadItem { table: String, why: String },

    /// An existing table is not laid out as this crate expects.
    #[error("table {table} exists but {why}")]
    Schema { table: String, why: String },

    /// A table did not reach the wanted state in time.
    #[error("table {table} did not become {state} in time")]
    TableWait { table: String, state: &'static str },
}

impl From<DynamoError> for Error {
    fn from(err: DynamoError) -> Self {
        match err {
            DynamoError::Unprocessed { .. }
            | DynamoError::Contention { .. }
            | DynamoError::TableWait { .. } => Error::unavailable(BACKEND, err),
            DynamoError::BadItem { .. } | DynamoError::Schema { .. } => {
                Error::backend(BACKEND, err)
            }
        }
    }
}

/// Converts an SDK error that the caller did not handle itself.
pub(crate) fn sdk<E>(err: SdkError<E, HttpResponse>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    if is_transient(&err) {
        Error::unavailable(BACKEND, err)
    } else {
        Error::backend(BACKEND, err)
    }
}

/// True if the error says "not now" rather than "not this".
pub(crate) fn is_transient<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || err
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// A request that could not be built: a bug in this crate, reported rather than panicking.
pub(crate) fn build(err: BuildError) -> Error {
    Error::backend(BACKEND, err)
}

/// A stored item that could not be decoded.
pub(crate) fn bad_item(table: &str, why: impl std::fmt::Display) -> Error {
    DynamoError::BadItem {
        table: table.to_owned(),
        why: why.to_string(),
    }
    .into()
}
