//! Converting rusqlite errors into storekit's, in one place.

use rusqlite::ffi;
use storekit_core::Error;

use crate::violation::{DriverError, Violation};

const BACKEND: &str = "sqlite";

impl DriverError for rusqlite::Error {
    fn violation(&self) -> Option<Violation> {
        match self.sqlite_error()?.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                Some(Violation::Unique)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
            _ => None,
        }
    }

    fn into_error(self) -> Error {
        sqlite_error(self)
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

/// An error of a statement on a table of the tables store: a taken key is `AlreadyExists`
/// (`"record"`), a taken unique value `AlreadyExists` (`"unique value"`), a missing table
/// `NotFound` (`"table"`), anything else through [`sqlite_error`].
pub(super) fn table_error(err: rusqlite::Error) -> Error {
    match err.sqlite_error().map(|e| e.extended_code) {
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => Error::AlreadyExists { what: "record" },
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => Error::AlreadyExists {
            what: "unique value",
        },
        // SQLite gives no code of its own for a missing table, only SQLITE_ERROR and this
        // message, unchanged for as long as SQLite has had it.
        Some(ffi::SQLITE_ERROR) if is_missing_table(&err) => Error::NotFound { what: "table" },
        _ => sqlite_error(err),
    }
}

/// True if `err` says a statement named a table that does not exist.
pub(super) fn is_missing_table(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(_, Some(message))
        if message.starts_with("no such table"))
}
