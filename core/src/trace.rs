//! A `tracing` span for every store call, opened in one place for every backend.
//!
//! Each call of a public store trait runs inside a span at `DEBUG` level with target
//! `storekit`, named after the operation, whose fields follow OpenTelemetry's database
//! conventions:
//!
//! | field | value |
//! |---|---|
//! | `storekit.backend` | the backend's one name, as errors and `Stores::backend()` give it: `sqlite`, `postgres`, `dynamodb` or `memory` |
//! | `db.system.name` | the database as OpenTelemetry's conventions name it: `sqlite`, `postgresql`, `aws.dynamodb` or `memory` |
//! | `db.operation.name` | the trait method, e.g. `get`, `create_user` |
//! | `db.collection.name` | the namespace, or `users`, `oauth_accounts`, `access_tokens` |
//! | `db.operation.batch.size` | the number of items of a batch call |
//! | `db.response.returned_rows` | items returned (listed keys, values found, users on a page) |
//! | `storekit.records_read` | records a table query or scan read to fill its page (see [`crate::table::QueryPage::read`]) |
//! | `storekit.outcome` | `ok`, or the kind of error (see [`crate::Error::kind`]) |
//! | `error.type` | the kind of error, on failure only |
//! | `aws.dynamodb.request_count` | DynamoDB requests the call made (retries included) |
//! | `aws.dynamodb.consumed_capacity` | capacity units they consumed |
//!
//! No field ever holds a value, a key, an email, a token or its hash. With no subscriber
//! listening at that level, a call pays one relaxed atomic load for its span.
//!
//! With the `metrics` feature, every call also counts into `storekit_operations_total` and
//! records its duration in seconds into `storekit_operation_duration_seconds` (both labelled
//! with `system`, the `db.system.name` value, `operation` and `outcome`) through the `metrics` crate's global recorder.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> storekit_core::Result<()> {
//! use storekit_core::{KvStore, MemoryStore};
//! // An application installs a subscriber once, e.g. tracing-subscriber's `fmt()` with
//! // `RUST_LOG=storekit=debug`; every call below then shows as one `set` and one `get` span.
//! let kv = MemoryStore::new();
//! kv.set("sessions", "a", b"1", None).await?;
//! assert!(kv.get("sessions", "a").await?.is_some());
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use tracing::Span;

use crate::{Error, Result};

/// The target of every storekit span.
pub const TARGET: &str = "storekit";

tokio::task_local! {
    static USAGE: Arc<Usage>;
}

/// What the database requests of one call consumed, as the backend reports it.
#[derive(Debug, Default)]
struct Usage {
    requests: AtomicU32,
    /// Capacity units in thousandths, so that they add up atomically.
    capacity_milli: AtomicU64,
}

/// Counts one request the current store call made to the database, with the capacity units
/// it consumed if the database reported them (DynamoDB's `ConsumedCapacity`). The call's span
/// shows the totals. Outside a traced call, or with tracing off, it does nothing.
pub fn count_request(consumed_capacity: Option<f64>) {
    let _ = USAGE.try_with(|usage| {
        usage.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(units) = consumed_capacity.filter(|units| units.is_finite() && *units > 0.0) {
            let milli = (units * 1000.0).round() as u64;
            usage.capacity_milli.fetch_add(milli, Ordering::Relaxed);
        }
    });
}

/// Opens the span of one store call (see the module docs for the fields).
macro_rules! call_span {
    ($backend:expr, $system:expr, $op:literal, $collection:expr) => {
        tracing::debug_span!(
            target: $crate::trace::TARGET,
            $op,
            storekit.backend = $backend,
            db.system.name = $system,
            db.operation.name = $op,
            db.collection.name = $collection,
            db.operation.batch.size = tracing::field::Empty,
            db.response.returned_rows = tracing::field::Empty,
            storekit.records_read = tracing::field::Empty,
            storekit.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
            aws.dynamodb.request_count = tracing::field::Empty,
            aws.dynamodb.consumed_capacity = tracing::field::Empty,
        )
    };
}
pub(crate) use call_span;

/// One store call being traced: its span, its operation, and what its metrics need.
pub(crate) struct Call {
    span: Span,
    operation: &'static str,
    #[cfg(feature = "metrics")]
    metrics: (&'static str, std::time::Instant),
}

impl Call {
    pub(crate) fn new(span: Span, _system: &'static str, operation: &'static str) -> Self {
        Self {
            span,
            operation,
            #[cfg(feature = "metrics")]
            metrics: (_system, std::time::Instant::now()),
        }
    }

    /// Records the size of a batch.
    pub(crate) fn batch(self, size: usize) -> Self {
        self.span.record("db.operation.batch.size", size);
        self
    }

    /// Runs the call's future inside its span, names the call and what it was `about` in a
    /// failure (see [`Error::during`]), then records its outcome and how many items it returned.
    pub(crate) async fn run<T>(
        self,
        work: impl Future<Output = Result<T>>,
        returned: impl FnOnce(&T) -> Option<usize>,
        about: impl FnOnce() -> String,
    ) -> Result<T> {
        use tracing::Instrument as _;
        let usage = (!self.span.is_disabled()).then(Arc::<Usage>::default);
        let out = match &usage {
            Some(usage) => {
                USAGE
                    .scope(usage.clone(), work.instrument(self.span.clone()))
                    .await
            }
            None => work.await,
        };
        let out = out.map_err(|e| e.during(self.operation, about));
        if let Some(usage) = usage {
            self.record_usage(&usage);
        }
        if let Ok(value) = &out
            && let Some(count) = returned(value)
        {
            self.span.record("db.response.returned_rows", count);
        }
        self.finish(out.as_ref().err());
        out
    }

    /// Wraps a listing: the span is entered while the stream is polled, counts the items, and
    /// records the outcome when the stream ends or fails; a failure names what the listing was
    /// `about` (see [`Call::run`]).
    pub(crate) fn stream(
        self,
        inner: BoxStream<'static, Result<String>>,
        about: String,
    ) -> BoxStream<'static, Result<String>> {
        let usage = (!self.span.is_disabled()).then(Arc::<Usage>::default);
        Box::pin(TracedStream {
            call: Some(self),
            inner,
            usage,
            returned: 0,
            about,
        })
    }

    fn end_listing(self, returned: usize, usage: Option<&Usage>, error: Option<&Error>) {
        self.span.record("db.response.returned_rows", returned);
        if let Some(usage) = usage {
            self.record_usage(usage);
        }
        self.finish(error);
    }

    fn record_usage(&self, usage: &Usage) {
        let requests = usage.requests.load(Ordering::Relaxed);
        if requests > 0 {
            self.span.record("aws.dynamodb.request_count", requests);
            let capacity = usage.capacity_milli.load(Ordering::Relaxed) as f64 / 1000.0;
            self.span.record("aws.dynamodb.consumed_capacity", capacity);
        }
    }

    fn finish(self, error: Option<&Error>) {
        let outcome = error.map_or("ok", Error::kind);
        self.span.record("storekit.outcome", outcome);
        if error.is_some() {
            self.span.record("error.type", outcome);
        }
        #[cfg(feature = "metrics")]
        {
            let (system, started) = self.metrics;
            let labels = [
                ("system", system),
                ("operation", self.operation),
                ("outcome", outcome),
            ];
            metrics::counter!("storekit_operations_total", &labels).increment(1);
            metrics::histogram!("storekit_operation_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
        }
    }
}

struct TracedStream {
    /// Taken when the listing ends, so the outcome is recorded once.
    call: Option<Call>,
    inner: BoxStream<'static, Result<String>>,
    /// What the pages' requests consumed, counted while the stream is polled.
    usage: Option<Arc<Usage>>,
    returned: usize,
    about: String,
}

impl Stream for TracedStream {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(call) = &this.call else {
            return Poll::Ready(None);
        };
        let polled = {
            let _entered = call.span.enter();
            let inner = &mut this.inner;
            match &this.usage {
                Some(usage) => USAGE.sync_scope(usage.clone(), || inner.as_mut().poll_next(cx)),
                None => inner.as_mut().poll_next(cx),
            }
        };
        match polled {
            Poll::Ready(Some(Ok(key))) => {
                this.returned += 1;
                Poll::Ready(Some(Ok(key)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = e.during(call.operation, || this.about.clone());
                if let Some(call) = this.call.take() {
                    call.end_listing(this.returned, this.usage.as_deref(), Some(&e));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.end_listing(this.returned, this.usage.as_deref(), None);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
