//! Copies of big batches made a chunk at a time, yielding to the runtime between chunks.
//!
//! A batch handed to the blocking pool (SQLite) or sorted there (PostgreSQL) must first be
//! copied out of the caller's borrowed slices. Copying 100,000 items at once held the runtime
//! thread for 10 to 20 ms in a debug build; a chunk of [`COPIED_PER_YIELD`] takes well under
//! a millisecond, and other tasks run between chunks.

/// Items copied between two yields.
pub(crate) const COPIED_PER_YIELD: usize = 2_000;

/// `items`, each copied with `copy`, in order.
pub(crate) async fn copied<T, U>(items: &[T], copy: impl Fn(&T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(items.len());
    for (i, chunk) in items.chunks(COPIED_PER_YIELD).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        out.extend(chunk.iter().map(&copy));
    }
    out
}
