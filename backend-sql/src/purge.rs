//! Expired key-value rows, and the expired records of tables whose records expire
//! ([`TableSchemaBuilder::ttl`](storekit_core::table::TableSchemaBuilder::ttl)), are deleted by
//! a background task that each store owns (started by the first write of either).
//!
//! Reads never return an expired row, but without deletion a cache that is only written and
//! read would grow for ever. A task started by the store's first key-value write wakes every
//! [`DEFAULT_INTERVAL`] (configurable; `None` turns it off) and deletes expired rows in batches
//! of [`BATCH`], each its own short transaction, until none are left. It runs off the request
//! path, whatever the write mix: no write waits for it beyond taking turns for the writer, and
//! a failed purge is logged and retried at the next tick, never reported to a caller. The task
//! holds only a weak reference to the store and is aborted when the last handle is dropped.

use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use storekit_core::Result;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often the task looks for expired rows unless configured otherwise.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Most rows one purge transaction deletes, so that it holds the writer only briefly.
pub(crate) const BATCH: i64 = 1000;

/// A store's purge task, started on first use.
#[derive(Debug)]
pub(crate) struct Purger {
    interval: Option<Duration>,
    task: OnceLock<AbortOnDrop>,
}

impl Purger {
    pub(crate) fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            task: OnceLock::new(),
        }
    }

    /// Starts the task unless it runs already, is turned off, or there is no Tokio runtime to
    /// run it on. `purge` deletes every expired row of the store it is given.
    pub(crate) fn ensure_started<S, F, Fut>(&self, store: Weak<S>, purge: F)
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64>> + Send + 'static,
    {
        let Some(interval) = self.interval else {
            return;
        };
        if self.task.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.task
            .get_or_init(|| AbortOnDrop(runtime.spawn(run(store, interval, purge))));
    }
}

async fn run<S, F, Fut>(store: Weak<S>, interval: Duration, purge: F)
where
    F: Fn(Arc<S>) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        match purge(store).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "purged expired key-value items and records"),
            Err(err) => tracing::warn!(
                error = &err as &dyn std::error::Error,
                "purging expired key-value items or records failed; retrying at the next tick"
            ),
        }
    }
}

/// Stops the task when the store that owns it is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
