//! Expired key-value rows are deleted a few at a time as a side effect of writes.
//!
//! Reads never return an expired row, but without deletion a cache that is only written and
//! read would grow for ever unless the application remembers to call `purge_expired`. So every
//! [`PurgeSchedule::EVERY`]th write also deletes up to [`PurgeSchedule::BATCH`] expired rows,
//! through the expiry index: a bounded cost, spread thinly, that keeps pace with any write rate
//! (each write can expire at most one row, and each purge removes up to `BATCH`).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct PurgeSchedule {
    writes: AtomicU64,
}

impl PurgeSchedule {
    /// One write in this many also purges.
    pub(crate) const EVERY: u64 = 128;
    /// Most rows one purge deletes.
    pub(crate) const BATCH: i64 = 256;

    /// Counts `writes` writes; true if one of them should purge now.
    pub(crate) fn due(&self, writes: u64) -> bool {
        let before = self.writes.fetch_add(writes, Ordering::Relaxed);
        before / Self::EVERY != (before + writes) / Self::EVERY
    }
}
