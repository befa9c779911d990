//! Converting sqlx errors into storekit's, in one place.

use storekit_core::Error;

use crate::violation::{DriverError, Violation};

const BACKEND: &str = "postgres";

impl DriverError for sqlx::Error {
    /// From the server's error code.
    fn violation(&self) -> Option<Violation> {
        let sqlx::Error::Database(db) = self else {
            return None;
        };
        if db.is_unique_violation() {
            Some(Violation::Unique)
        } else if db.is_foreign_key_violation() {
            Some(Violation::ForeignKey)
        } else {
            None
        }
    }

    fn into_error(self) -> Error {
        pg_error(self)
    }
}

/// Any other sqlx error: no connection, or a server error that says the statement was rolled
/// back and may succeed if tried again ([`is_retryable_code`]), is `Unavailable`; a connection
/// that broke mid-call is `OutcomeUnknown`; the rest `Backend`.
pub(super) fn pg_error(err: sqlx::Error) -> Error {
    match err {
        // No connection was had: nothing was sent.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Error::unavailable(BACKEND, err),
        // No connection could be opened (the name does not resolve, nothing listens): no
        // statement can have been sent.
        sqlx::Error::Io(ref io) if never_connected(io) => Error::unavailable(BACKEND, err),
        // The connection broke, perhaps after the statement was sent and even committed.
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            Error::outcome_unknown(BACKEND, err)
        }
        sqlx::Error::Database(ref db) if db.code().is_some_and(|code| is_retryable_code(&code)) => {
            Error::unavailable(BACKEND, err)
        }
        _ => Error::backend(BACKEND, err),
    }
}

/// True if `io` is a failure to open a connection at all, as opposed to one that broke while
/// in use.
fn never_connected(io: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::AddrNotAvailable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::HostUnreachable => true,
        // The standard library's resolver failure has no kind of its own and no OS error code;
        // its message is the one thing that names it.
        _ => {
            io.raw_os_error().is_none()
                && io
                    .to_string()
                    .starts_with("failed to lookup address information")
        }
    }
}

/// SQLSTATEs after which the same statement may well succeed: class 08 (connection
/// exception), class 53 (insufficient resources: disk full, out of memory, too many
/// connections), 40001 serialization failure, 40P01 deadlock, 55P03 lock not available,
/// 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now), 57014 (statement
/// cancelled, e.g. by `statement_timeout`).
fn is_retryable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57014"
        )
}

/// True if `err` is a deadlock the server broke by rolling this statement back.
pub(super) fn is_deadlock(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// True if the server rolled the statement back to break a deadlock or a serialization
/// conflict: the same statement may simply be run again.
pub(super) fn is_rolled_back_conflict(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Attempts an idempotent statement gets when the server keeps rolling it back.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Runs an idempotent statement, again when the server rolled it back to break a deadlock or
/// a serialization conflict: up to [`CONFLICT_ATTEMPTS`] times, pausing 1-2 ms, then twice
/// as long each time, with jitter so that the transactions that collided do not collide again.
pub(super) async fn retry_conflicts<T, F, Fut>(statement: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    retry_conflicts_with(statement, pg_error).await
}

/// Like [`retry_conflicts`], converting the final error with `convert`.
pub(super) async fn retry_conflicts_with<T, F, Fut>(
    mut statement: F,
    convert: impl FnOnce(sqlx::Error) -> Error,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut pause = std::time::Duration::from_millis(1);
    for _ in 1..CONFLICT_ATTEMPTS {
        match statement().await {
            Err(err) if is_rolled_back_conflict(&err) => {
                // The sub-second clock is jitter enough for a pause of a few milliseconds.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |now| now.subsec_nanos());
                let jitter = f64::from(nanos % 1000) / 1000.0;
                tokio::time::sleep(pause.mul_f64(1.0 + jitter)).await;
                pause *= 2;
            }
            other => return other.map_err(convert),
        }
    }
    statement().await.map_err(convert)
}

/// An error of a statement on a table of the tables store: a violation of its primary key
/// (the constraint `primary_key`) is `AlreadyExists` (`"record"`), of any other unique index
/// `AlreadyExists` (`"unique value"`), a missing table (42P01) `NotFound` (`"table"`), anything
/// else through [`pg_error`].
pub(super) fn table_error(err: sqlx::Error, primary_key: &str) -> Error {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return if db.constraint() == Some(primary_key) {
                Error::AlreadyExists { what: "record" }
            } else {
                Error::AlreadyExists {
                    what: "unique value",
                }
            };
        }
        if is_missing_table(&err) {
            return Error::NotFound { what: "table" };
        }
    }
    pg_error(err)
}

/// True if `err` is the server's undefined_table (42P01).
pub(super) fn is_missing_table(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
}

#[cfg(test)]
mod tests {
    use super::is_retryable_code;

    #[test]
    fn retryable_codes_are_those_that_roll_back_and_may_pass_again() {
        for code in [
            "08006", "08001", "53100", "53300", "40001", "40P01", "55P03", "57P01",
        ] {
            assert!(is_retryable_code(code), "{code}");
        }
        for code in ["23505", "23503", "22P02", "42P01", "XX000"] {
            assert!(!is_retryable_code(code), "{code}");
        }
    }
}
