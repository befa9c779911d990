//! Which constraint a failed statement violated, asked the same way of both drivers' errors.
//!
//! Conflicts are mapped from the database's answer, never by reading before writing: a
//! driver tells [`DriverError::violation`] from its error codes, and [`on_violation`] turns
//! the one expected violation into storekit's error and anything else into the driver's.

use storekit_core::Error;

/// Which constraint a failed statement violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
}

/// A driver's error, as far as constraint classification needs it.
pub(crate) trait DriverError: Sized {
    /// The constraint the error reports, if it is a constraint violation.
    fn violation(&self) -> Option<Violation>;

    /// The error as storekit's, when it is not the violation expected.
    fn into_error(self) -> Error;
}

/// Maps a violation of `kind` to `then`, anything else through [`DriverError::into_error`].
pub(crate) fn on_violation<E: DriverError>(
    kind: Violation,
    then: Error,
) -> impl FnOnce(E) -> Error {
    move |err| {
        if err.violation() == Some(kind) {
            then
        } else {
            err.into_error()
        }
    }
}

/// The error of inserting an OAuth account: its (provider, account id) taken is
/// `AlreadyExists` (`"oauth account"`), its user gone `NotFound` (`"user"`).
pub(crate) fn account_insert_error<E: DriverError>(err: E) -> Error {
    match err.violation() {
        Some(Violation::Unique) => Error::AlreadyExists {
            what: "oauth account",
        },
        Some(Violation::ForeignKey) => Error::NotFound { what: "user" },
        None => err.into_error(),
    }
}
