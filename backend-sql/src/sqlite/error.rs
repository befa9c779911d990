//! Converting rusqlite errors into storekit's, in one place.

use rusqlite::ffi;
use storekit_core::Error;

const BACKEND: &str = "sqlite";

/// Which constraint a failed statement violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Violation {
    Unique,
    ForeignKey,
}

/// The constraint `err` reports, if it is a constraint violation.
pub(super) fn violation(err: &rusqlite::Error) -> Option<Violation> {
    match err.sqlite_error()?.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            Some(Violation::Unique)
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// True if `err` is another connection's lock ([`sqlite_error`] of `SQLITE_BUSY` or
/// `SQLITE_LOCKED`): nothing was done, and the same work may be tried again.
pub(super) fn is_busy(err: &Error) -> bool {
    let Error::Unavailable { source, .. } = err else {
        return false;
    };
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| {
            matches!(
                code,
                ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked
            )
        })
}

/// Any other rusqlite error: a lock held by another connection is `Unavailable` (retried
/// until the busy timeout, see `conn`).
pub(super) fn sqlite_error(err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked) => {
            Error::unavailable(BACKEND, err)
        }
        _ => Error::backend(BACKEND, err),
    }
}

/// Maps a violation of `kind` to `then`, anything else through [`sqlite_error`].
pub(super) fn on_violation(kind: Violation, then: Error) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| {
        if violation(&err) == Some(kind) {
            then
        } else {
            sqlite_error(err)
        }
    }
}
