//! The one place where DynamoDB's failures become storekit's [`Error`].
//!
//! SDK errors are classified once: a request that got no answer (a timeout, a connection lost
//! while the answer was read) is [`Error::OutcomeUnknown`], since it may have been applied;
//! throttling, failures to reach the service and server faults (5xx) are
//! [`Error::Unavailable`] (nothing applied, retrying may help); a table that does not exist is
//! [`Error::NotFound`] (`"table"`); everything else is [`Error::Backend`]. Either way
//! the SDK error is kept whole as the source, never turned into a string. Failures that are
//! storekit's own (a batch that kept coming back unprocessed, a malformed stored item) are
//! [`DynamoError`] and convert the same way.

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use storekit_core::Error;

/// The backend name in every error.
pub(crate) const BACKEND: &str = "dynamodb";

/// Service error codes after which a later attempt may succeed: DynamoDB's own, and the
/// throttling and fault codes AWS services share (the SDK retries the same ones).
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "ReplicatedWriteConflictException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
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
    /// A global secondary index being added did not become active in time.
    #[error("index {index} of table {table} did not become active in time")]
    IndexWait { table: String, index: String },
}

impl From<DynamoError> for Error {
    fn from(err: DynamoError) -> Self {
        match err {
            DynamoError::Unprocessed { .. }
            | DynamoError::Contention { .. }
            | DynamoError::TableWait { .. }
            | DynamoError::IndexWait { .. } => Error::unavailable(BACKEND, err),
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
    if err.code() == Some("ResourceNotFoundException") {
        // As the SQL backends answer for a missing table: the caller can tell it apart, and
        // `migrate` or `ensure_table` mends it.
        Error::NotFound { what: "table" }
    } else if is_unanswered(&err) {
        Error::outcome_unknown(BACKEND, err)
    } else if is_transient(&err) {
        Error::unavailable(BACKEND, err)
    } else {
        Error::backend(BACKEND, err)
    }
}

/// True if the request may have reached DynamoDB and no answer came back: timed out, or the
/// connection broke while the answer was read.
fn is_unanswered<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    }
}

/// True if the error says "not now" rather than "not this".
pub(crate) fn is_transient<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        // No answer in time, or the connection broke while the answer was read: the request
        // may or may not have been applied, and a later attempt may get through.
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        // The request could not be sent or its answer not received (refused, reset, timed
        // out). A failure the caller caused (e.g. an endpoint the connector cannot use) will
        // fail the same way every time.
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(service) => {
            let status = service.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || err
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        // The request could not be built: a bug, not a passing condition.
        SdkError::ConstructionFailure(_) => false,
        // `SdkError` is non-exhaustive; a new kind is reported as it is until classified.
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

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    type GetError = SdkError<GetItemError, HttpResponse>;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).unwrap_or_else(|_| unreachable!("a valid status")),
            SdkBody::empty(),
        )
    }

    fn service(status: u16, code: &str) -> GetError {
        let err = GetItemError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(err, response(status))
    }

    fn unavailable(err: GetError) -> bool {
        matches!(sdk(err), Error::Unavailable { .. })
    }

    fn outcome_unknown(err: GetError) -> bool {
        matches!(sdk(err), Error::OutcomeUnknown { .. })
    }

    #[test]
    fn requests_without_an_answer_have_an_unknown_outcome() {
        let io = || "connection reset by peer".to_owned();
        assert!(outcome_unknown(SdkError::response_error(
            io(),
            response(200)
        )));
        assert!(outcome_unknown(SdkError::timeout_error(io())));
        assert!(outcome_unknown(SdkError::dispatch_failure(
            ConnectorError::timeout(io().into())
        )));
    }

    #[test]
    fn failures_worth_retrying_are_unavailable() {
        let io = || "connection reset by peer".to_owned();
        assert!(unavailable(SdkError::dispatch_failure(ConnectorError::io(
            io().into()
        ))));
        assert!(unavailable(SdkError::dispatch_failure(
            ConnectorError::other(io().into(), None)
        )));
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "TransactionConflictException",
        ] {
            assert!(unavailable(service(400, code)), "{code}");
        }
        assert!(unavailable(service(500, "InternalServerError")));
        assert!(unavailable(service(503, "Anything")));
        assert!(unavailable(service(429, "Anything")));
    }

    #[test]
    fn failures_that_would_repeat_are_backend_errors() {
        let why = || "bad".to_owned();
        assert!(!unavailable(service(400, "ValidationException")));
        assert!(!unavailable(service(400, "ResourceNotFoundException")));
        assert!(!unavailable(service(400, "AccessDeniedException")));
        assert!(!unavailable(SdkError::construction_failure(why())));
        assert!(!unavailable(SdkError::dispatch_failure(
            ConnectorError::user(why().into())
        )));
    }
}
