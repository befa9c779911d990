//! Converting sqlx errors into storekit's, in one place.

use storekit_core::Error;

const BACKEND: &str = "postgres";

/// Which constraint a failed statement violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Violation {
    Unique,
    ForeignKey,
}

/// The constraint `err` reports, from the server's error code.
pub(super) fn violation(err: &sqlx::Error) -> Option<Violation> {
    let sqlx::Error::Database(db) = err else {
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

/// Any other sqlx error: no connection, or a server error that says the statement was rolled
/// back and may succeed if tried again ([`is_retryable_code`]), is `Unavailable`; a connection
/// that broke mid-call is `OutcomeUnknown`; the rest `Backend`.
pub(super) fn pg_error(err: sqlx::Error) -> Error {
    match err {
        // No connection was had: nothing was sent.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Error::unavailable(BACKEND, err),
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

/// Maps a violation of `kind` to `then`, anything else through [`pg_error`].
pub(super) fn on_violation(kind: Violation, then: Error) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| {
        if violation(&err) == Some(kind) {
            then
        } else {
            pg_error(err)
        }
    }
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
