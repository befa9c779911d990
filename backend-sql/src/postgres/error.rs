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

/// Any other sqlx error: connection trouble, a deadlock or a serialization failure (worth
/// retrying: the statement was rolled back) is `Unavailable`, the rest `Backend`.
pub(super) fn pg_error(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::unavailable(BACKEND, err),
        // 40001 serialization_failure, 40P01 deadlock_detected.
        sqlx::Error::Database(ref db)
            if matches!(db.code().as_deref(), Some("40001" | "40P01")) =>
        {
            Error::unavailable(BACKEND, err)
        }
        _ => Error::backend(BACKEND, err),
    }
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
