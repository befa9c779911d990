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

    /// The record changed since the caller read it (optimistic concurrency), or, with `what`
    /// `"condition"`, a write's condition does not hold on the record at `actual`.
    #[error("{}", conflict_message(.what, *.expected, *.actual))]
    Conflict {
        /// What conflicted, e.g. `"user"`; `"condition"` for a condition that does not hold.
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

    /// A live table differs from the schema declared for it in ways storekit will not change
    /// by itself (a key, or an index that is defined differently or not declared).
    #[error("table {table:?} differs from its schema: {}", differences.join("; "))]
    SchemaMismatch {
        /// The table.
        table: String,
        /// Each difference, e.g. `partition key is id int, declared id text`.
        differences: Vec<String>,
    },

    /// The server could not be reached or refused to serve for now; retrying may help.
    #[error("{backend} is unavailable{context}")]
    Unavailable {
        /// The backend's name, e.g. `"postgres"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
        /// The call that failed and what it was about.
        context: Context,
    },

    /// The request reached (or may have reached) the server, and the connection failed before
    /// its answer: a write may or may not have been applied. Retrying is safe for writes that
    /// are idempotent (a `set`, a `delete`); otherwise read first to find out.
    #[error("{backend} did not answer: the outcome is unknown{context}")]
    OutcomeUnknown {
        /// The backend's name, e.g. `"postgres"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
        /// The call that failed and what it was about.
        context: Context,
    },

    /// An action of a transaction ([`crate::table::Transaction`]) failed, so nothing of the
    /// transaction was written: `index` is the action's position (from 0, in the order they
    /// were added) and `source` why it failed (a [`Conflict`](Error::Conflict) on
    /// `"condition"`, [`NotFound`](Error::NotFound), [`AlreadyExists`](Error::AlreadyExists),
    /// [`InvalidInput`](Error::InvalidInput)...).
    #[error("action {index} of the transaction failed, and nothing was written: {source}")]
    TransactionFailed {
        /// The failed action's index.
        index: usize,
        /// What went wrong with it.
        #[source]
        source: Box<Error>,
    },

    /// Any other failure reported by the database or its driver.
    #[error("{backend} error{context}")]
    Backend {
        /// The backend's name, e.g. `"sqlite"`.
        backend: &'static str,
        /// What the driver reported.
        #[source]
        source: BoxError,
        /// The call that failed and what it was about.
        context: Context,
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
            context: Context::default(),
        }
    }

    /// Builds [`Error::Unavailable`] from any driver error.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            backend,
            source: source.into(),
            context: Context::default(),
        }
    }

    /// Builds [`Error::OutcomeUnknown`] from any driver error.
    pub fn outcome_unknown(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::OutcomeUnknown {
            backend,
            source: source.into(),
            context: Context::default(),
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

    /// The kind of error as one stable word, as spans and metrics label it: `not_found`,
    /// `already_exists`, `conflict`, `invalid_input`, `value_too_large`, `schema_mismatch`, `unavailable`,
    /// `outcome_unknown`, `backend` or `transaction_failed`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Conflict { .. } => "conflict",
            Self::InvalidInput { .. } => "invalid_input",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::SchemaMismatch { .. } => "schema_mismatch",
            Self::Unavailable { .. } => "unavailable",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Backend { .. } => "backend",
            Self::TransactionFailed { .. } => "transaction_failed",
        }
    }

    /// The call that failed and what it was about, for failures of the database or its
    /// driver (the other variants say what was wrong themselves).
    #[must_use]
    pub fn context(&self) -> Option<&Context> {
        match self {
            Self::Unavailable { context, .. }
            | Self::OutcomeUnknown { context, .. }
            | Self::Backend { context, .. } => Some(context).filter(|c| !c.is_empty()),
            _ => None,
        }
    }

    /// Names the call that failed and what it was about (a namespace and key, a user id, never
    /// a value or a secret), unless the error already has a context. Every store call does
    /// this for its backend.
    #[must_use]
    pub fn during(mut self, operation: &'static str, about: impl FnOnce() -> String) -> Self {
        if let Self::Unavailable { context, .. }
        | Self::OutcomeUnknown { context, .. }
        | Self::Backend { context, .. } = &mut self
            && context.is_empty()
        {
            *context = Context {
                operation,
                about: about(),
            };
        }
        self
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

/// The store call a failure happened in, shown after the error's message: ` in get (namespace
/// "sessions", key "abc")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    operation: &'static str,
    about: String,
}

impl Context {
    /// The trait method that failed, e.g. `get` or `update_user`.
    #[must_use]
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// What the call was about, e.g. `namespace "sessions", key "abc"` or `user 42`; empty if
    /// nothing can be shown.
    #[must_use]
    pub fn about(&self) -> &str {
        &self.about
    }

    fn is_empty(&self) -> bool {
        self.operation.is_empty()
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        write!(f, " in {}", self.operation)?;
        if !self.about.is_empty() {
            write!(f, " ({})", self.about)?;
        }
        Ok(())
    }
}

fn conflict_message(what: &str, expected: u64, actual: u64) -> String {
    if what == "condition" {
        format!("the condition does not hold on the record (at version {actual})")
    } else {
        format!("{what} was changed concurrently: expected version {expected}, found {actual}")
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_driver_failure_names_its_call_and_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let error = Error::outcome_unknown("postgres", io)
            .during("set", || "namespace \"sessions\", key \"abc\"".to_owned());
        assert_eq!(
            error.to_string(),
            "postgres did not answer: the outcome is unknown in set \
             (namespace \"sessions\", key \"abc\")"
        );
        let context = error.context().expect("a context");
        assert_eq!(context.operation(), "set");
        let source = std::error::Error::source(&error).expect("the driver's error");
        assert_eq!(source.to_string(), "reset by peer");
        assert!(error.is_retryable() && error.may_have_been_applied());
        assert_eq!(error.kind(), "outcome_unknown");
    }

    #[test]
    fn the_innermost_call_names_the_failure_and_input_errors_stay_as_they_are() {
        let error = Error::backend("sqlite", "disk I/O error")
            .during("get_user", || "user 42".to_owned())
            .during("add_oauth_account", || "user 42".to_owned());
        assert_eq!(error.to_string(), "sqlite error in get_user (user 42)");
        let invalid = Error::invalid("key", "must not be empty").during("get", String::new);
        assert_eq!(invalid.to_string(), "invalid key: must not be empty");
        assert!(invalid.context().is_none());
    }
}
