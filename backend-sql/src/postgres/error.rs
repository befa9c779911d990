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

/// Any other sqlx error: connection trouble is `Unavailable`, the rest `Backend`.
pub(super) fn pg_error(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::unavailable(BACKEND, err),
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
