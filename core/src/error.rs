//! The one error type every store returns.
//!
//! Backends keep their own private error enums and convert them here, in one place each, so
//! that callers match on the same variants whichever database is underneath.

use std::error::Error as StdError;

/// A boxed error from a driver or server, kept whole so the source chain is never lost.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The result type of every store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store operation can fail with.
///
/// The variants mean the same on every backend; the conformance suite checks that.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing to update or delete does not exist (reads return `Ok(None)` instead).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `"user"`.
        what: &'static str,
    },

    /// A unique value is already taken, e.g. an email or an OAuth account.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What is taken, e.g. `"email"`.
        what: &'static str,
    },

    /// The record changed since the caller read it (optimistic concurrency).
    #[error("{what} was changed concurrently: expected version {expected}, found {actual}")]
    Conflict {
        /// What conflicted, e.g. `"user"`.
        what: &'static str,
        /// The version the caller expected.
        expected: u64,
        /// The version the store holds.
        actual: u64,
    },

    /// The input breaks a rule that is the same on every backend.
    #[error("invalid {what}: {why}")]
    InvalidInput {
        /// Which input, e.g. `"key"` or `"email"`.
        what: &'static str,
        /// Why it was refused.
        why: String,
    },

    /// A value is larger than every backend can store.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// What was too large, e.g. `"value"`.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The server could not be reached or refused to serve for now; retrying may help.
    #[error("{backend} is unavailable")]
    Unavailable {
        /// The backend's name, e.g. `"postgres"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
    },

    /// The request reached (or may have reached) the server, and the connection failed before
    /// its answer: a write may or may not have been applied. Retrying is safe for writes that
    /// are idempotent (a `set`, a `delete`); otherwise read first to find out.
    #[error("{backend} did not answer: the outcome is unknown")]
    OutcomeUnknown {
        /// The backend's name, e.g. `"postgres"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
    },

    /// Any other failure reported by the database or its driver.
    #[error("{backend} error")]
    Backend {
        /// The backend's name, e.g. `"sqlite"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Builds [`Error::InvalidInput`].
    pub fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        Self::InvalidInput {
            what,
            why: why.into(),
        }
    }

    /// Builds [`Error::Backend`] from any driver error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Builds [`Error::Unavailable`] from any driver error.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            backend,
            source: source.into(),
        }
    }

    /// Builds [`Error::OutcomeUnknown`] from any driver error.
    pub fn outcome_unknown(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::OutcomeUnknown {
            backend,
            source: source.into(),
        }
    }

    /// True if trying the same call again may succeed: [`Error::Unavailable`] (nothing was
    /// applied) and [`Error::OutcomeUnknown`] (something may have been; see
    /// [`Error::may_have_been_applied`]).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::OutcomeUnknown { .. })
    }

    /// True if a write that failed with this error may nevertheless have been applied
    /// ([`Error::OutcomeUnknown`]). Every other error means nothing was written.
    #[must_use]
    pub fn may_have_been_applied(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// True for [`Error::AlreadyExists`].
    #[must_use]
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// True for [`Error::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for [`Error::Conflict`].
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}
