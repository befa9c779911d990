//! What both drivers' key-value stores do the same way: listing keys in ordered pages and
//! purging expired items a batch at a time. The drivers run the statements.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use storekit_core::Result;
use storekit_core::kv::{KeyPage, PageSizes, ordered_key_pages};

use crate::purge;

/// Reads one page of a listing: `(store, namespace, from, first, limit)` gives up to `limit`
/// live keys of `namespace` in key order, `>= from` on the `first` page and `> from` after.
pub(crate) type ReadPage<S> =
    for<'a> fn(&'a S, &'a str, &'a str, bool, usize) -> BoxFuture<'a, Result<KeyPage>>;

/// The live keys of `namespace` that start with `prefix`, in key order, in pages of `sizes`
/// read by `read` (see `ordered_key_pages`: no connection is held between pages).
pub(crate) fn key_pages<S: Send + Sync + 'static>(
    store: S,
    namespace: &str,
    prefix: &str,
    sizes: PageSizes,
    read: ReadPage<S>,
) -> BoxStream<'static, Result<String>> {
    // Owned once per listing and shared by its pages: a page costs a reference count.
    let listing = Arc::new((store, namespace.to_owned(), prefix.to_owned()));
    ordered_key_pages(prefix.to_owned(), sizes, move |after, limit| {
        let listing = listing.clone();
        async move {
            let (store, namespace, prefix) = &*listing;
            match after {
                None => read(store, namespace, prefix, true, limit).await,
                Some(after) => read(store, namespace, &after, false, limit).await,
            }
        }
    })
}

/// Runs `batch`, which deletes at most [`purge::BATCH`] expired items and says how many,
/// until one deletes fewer, so that no transaction runs long; the items deleted in all.
pub(crate) async fn purge_in_batches<F, Fut>(mut batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut purged = 0;
    loop {
        let deleted = batch().await?;
        purged += deleted;
        if deleted < purge::BATCH as u64 {
            return Ok(purged);
        }
    }
}
