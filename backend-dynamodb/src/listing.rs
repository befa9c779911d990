//! A namespace's key listing: the Queries of its shards run concurrently, and their keys are
//! merged into one stream in key order.
//!
//! A namespace is spread over shards so that a busy one is not one hot partition; a listing
//! must read every shard. One shard after another, a small namespace paid one Query's latency
//! per shard (16 by default) where a table keeping it in one partition pays one. Here the
//! first page of every shard is asked for at once, so a listing that fits in one page per
//! shard takes about one Query's latency, with the same requests as before: one per page.
//!
//! Each shard's Query returns its keys in order (DynamoDB sorts a partition by its sort key,
//! by the bytes of the UTF-8 text, as Rust orders `str`), and a shard's keys are all distinct
//! from another's, so merging the heads gives every live key once, in key order, as the
//! other backends list them. While its keys are being merged, the next page of a shard is
//! already asked for (one page ahead, at most [`IN_FLIGHT`] Queries at a time), so a long
//! listing does not wait for a shard at each of its page boundaries; at most two pages per
//! shard are held at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};
use futures::{FutureExt as _, StreamExt as _};
use storekit_core::Result;
use storekit_core::time::{is_live, now_millis};

use crate::DynamoDbStore;
use crate::batch;
use crate::item::{self, Item, SK};

/// Queries one listing keeps in flight at most: every shard of the default 16 at once.
const IN_FLIGHT: usize = 16;

/// One page of a shard: its live keys in order, and where the next page starts.
type Page = (VecDeque<String>, Option<Item>);

/// What a listing owns: a clone of the store (which shares the client and config), the
/// namespace and the prefix, shared by every page's Query.
struct Source {
    store: DynamoDbStore,
    namespace: String,
    prefix: String,
}

impl Source {
    fn page(self: &Arc<Self>, shard: u16, start: Option<Item>) -> BoxFuture<'static, Result<Page>> {
        let source = self.clone();
        async move {
            let store = &source.store;
            let query = store.shard_query(&source.namespace, shard, &source.prefix);
            let (items, next) = batch::query_page(query, start).await?;
            // Read once a page: an item that expires while the listing runs is left out of
            // the pages read after its deadline, as on every backend.
            let now = now_millis();
            let mut keys = VecDeque::with_capacity(items.len());
            for item in &items {
                if is_live(store.expires(item)?, now) {
                    keys.push_back(item::get_s(item, &store.kv_table, SK)?.to_owned());
                }
            }
            Ok((keys, next))
        }
        .boxed()
    }
}

/// Where the listing is in one shard.
struct Shard {
    number: u16,
    /// Keys read and not yet listed, in order.
    keys: VecDeque<String>,
    /// Where the next page starts; `None` with `last` once the last page was asked for.
    next: Option<Item>,
    /// The last page was asked for (its answer may still be in flight).
    last: bool,
    /// The page in flight, if any.
    fetch: Option<BoxFuture<'static, Result<Page>>>,
}

impl Shard {
    /// Nothing more will come from this shard.
    fn finished(&self) -> bool {
        self.keys.is_empty() && self.last && self.fetch.is_none()
    }

    /// The merge cannot go on before this shard's next page arrives.
    fn starved(&self) -> bool {
        self.keys.is_empty() && !self.finished()
    }
}

/// The merged listing (see the module's docs).
struct Merge {
    source: Arc<Source>,
    shards: Vec<Shard>,
    /// An error ended the listing.
    failed: bool,
}

impl Merge {
    /// Asks for pages: first for every shard the merge waits on, then one page ahead for the
    /// others, while fewer than [`IN_FLIGHT`] Queries are out.
    fn ask(&mut self) {
        let mut in_flight = self.shards.iter().filter(|s| s.fetch.is_some()).count();
        for ahead in [false, true] {
            for shard in &mut self.shards {
                if in_flight >= IN_FLIGHT {
                    return;
                }
                let wanted =
                    shard.fetch.is_none() && !shard.last && (ahead || shard.keys.is_empty());
                if wanted {
                    let start = shard.next.take();
                    // Only the first page of a shard starts without a key; after it, a page
                    // is asked for only when the one before named where to go on.
                    shard.last = true;
                    shard.fetch = Some(self.source.page(shard.number, start));
                    in_flight += 1;
                }
            }
        }
    }
}

impl Stream for Merge {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            this.ask();
            let mut arrived = false;
            for shard in &mut this.shards {
                let Some(fetch) = shard.fetch.as_mut() else {
                    continue;
                };
                match fetch.poll_unpin(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Err(e)) => {
                        this.failed = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(Ok((keys, next))) => {
                        shard.fetch = None;
                        shard.keys.extend(keys);
                        shard.last = next.is_none();
                        shard.next = next;
                        arrived = true;
                    }
                }
            }
            if this.shards.iter().any(Shard::starved) {
                if arrived {
                    // A page came in: ask for what it made possible, and poll again.
                    continue;
                }
                return Poll::Pending;
            }
            let smallest = this
                .shards
                .iter_mut()
                .filter(|shard| !shard.keys.is_empty())
                .min_by(|a, b| a.keys.front().cmp(&b.keys.front()));
            return Poll::Ready(smallest.and_then(|shard| shard.keys.pop_front()).map(Ok));
        }
    }
}

/// Every live key of `namespace` that starts with `prefix`, in key order.
pub(crate) fn keys(
    store: &DynamoDbStore,
    namespace: &str,
    prefix: &str,
) -> BoxStream<'static, Result<String>> {
    let shards = (0..store.config.shard_count())
        .map(|number| Shard {
            number,
            keys: VecDeque::new(),
            next: None,
            last: false,
            fetch: None,
        })
        .collect();
    Merge {
        source: Arc::new(Source {
            store: store.clone(),
            namespace: namespace.to_owned(),
            prefix: prefix.to_owned(),
        }),
        shards,
        failed: false,
    }
    .boxed()
}
