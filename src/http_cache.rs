//! An [`http-cache`](https://docs.rs/http-cache) [`CacheManager`] on any [`KvStore`](crate::KvStore) (feature
//! `http-cache`): the caching middleware of `reqwest-middleware` (`http-cache-reqwest`) keeps
//! its responses in SQLite, PostgreSQL or DynamoDB, shared by every instance of a service.
//!
//! ```no_run
//! use http_cache_reqwest::{Cache, CacheMode, HttpCache, HttpCacheOptions};
//! use storekit::http_cache::KvCacheManager;
//!
//! # async fn run() -> storekit::Result<()> {
//! let stores = storekit::connect("sqlite://cache.db").await?;
//! stores.migrate().await?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(Cache(HttpCache {
//!         mode: CacheMode::Default,
//!         manager: KvCacheManager::new(stores.kv()),       // namespace "http-cache"
//!         options: HttpCacheOptions::default(),
//!     }))
//!     .build();
//! # let _ = client; Ok(()) }
//! ```
//!
//! What it promises:
//! - A response is stored with a TTL of its freshness lifetime by the cache policy plus a
//!   grace period ([`KvCacheManager::DEFAULT_GRACE`], or [`KvCacheManager::with_grace`]): the
//!   middleware decides freshness from the policy it stored with the response, and a stale
//!   response is still there for revalidation (`ETag`, `Last-Modified`) and `stale-if-error`
//!   during the grace period. After it, the store deletes it like any expired item.
//! - A response whose stored form is over the store's value limit
//!   ([`crate::LIMITS`]`.max_value_bytes`) is not cached: a log line at `INFO` says so, and the
//!   response goes to the caller as if no cache were there, never as an error.
//! - An entry that cannot be decoded (written by another version) is a miss, logged at `WARN`.
//! - Keys are the middleware's cache keys (`GET:https://…`); one longer than the store's key
//!   limit is stored under `#` and the hex SHA-256 of the key.
//! - Responses are stored as postcard (as `http-cache`'s own managers do): the body as raw
//!   bytes, with headers, status, URL and the policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_cache::{CacheManager, HttpResponse};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use storekit_core::{DynKvStore, Error, LIMITS, validate};

/// The namespace responses are kept in unless another is given.
pub const DEFAULT_NAMESPACE: &str = "http-cache";

/// A `http-cache` manager whose entries are items of a [`KvStore`](crate::KvStore) namespace.
/// Cheap to clone.
#[derive(Clone)]
pub struct KvCacheManager {
    kv: Arc<DynKvStore>,
    namespace: String,
    grace: Duration,
}

impl std::fmt::Debug for KvCacheManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCacheManager")
            .field("kv", &self.kv)
            .field("namespace", &self.namespace)
            .field("grace", &self.grace)
            .finish()
    }
}

impl KvCacheManager {
    /// How long a response is kept past its freshness lifetime unless set otherwise: one hour.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

    /// Responses in the namespace [`DEFAULT_NAMESPACE`] of `kv`.
    #[must_use]
    pub fn new(kv: Arc<DynKvStore>) -> Self {
        Self {
            kv,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            grace: Self::DEFAULT_GRACE,
        }
    }

    /// Responses in `namespace` of `kv`; [`Error::InvalidInput`] if it is not a namespace.
    pub fn with_namespace(
        kv: Arc<DynKvStore>,
        namespace: impl Into<String>,
    ) -> storekit_core::Result<Self> {
        let namespace = namespace.into();
        validate::check_namespace(&namespace)?;
        Ok(Self {
            kv,
            namespace,
            grace: Self::DEFAULT_GRACE,
        })
    }

    /// Keeps responses for `grace` past their freshness lifetime (for revalidation and
    /// `stale-if-error`); zero keeps them only while fresh, and a response that is stale on
    /// arrival is then not stored.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The namespace the responses are in.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The store key of a cache key.
    fn key(cache_key: &str) -> String {
        if cache_key.len() <= LIMITS.max_key_bytes && !cache_key.starts_with('#') {
            return cache_key.to_owned();
        }
        let digest = Sha256::digest(cache_key.as_bytes());
        let mut key = String::with_capacity(1 + 2 * digest.len());
        key.push('#');
        for byte in digest {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }
}

/// What is stored of a response.
#[derive(Serialize, Deserialize)]
struct Stored {
    response: HttpResponse,
    policy: CachePolicy,
}

impl CacheManager for KvCacheManager {
    async fn get(
        &self,
        cache_key: &str,
    ) -> http_cache::Result<Option<(HttpResponse, CachePolicy)>> {
        let Some(bytes) = self.kv.get(&self.namespace, &Self::key(cache_key)).await? else {
            return Ok(None);
        };
        match postcard::from_bytes::<Stored>(&bytes) {
            Ok(stored) => Ok(Some((stored.response, stored.policy))),
            Err(e) => {
                tracing::warn!(error = %e, "an http-cache entry could not be decoded; a miss");
                Ok(None)
            }
        }
    }

    async fn put(
        &self,
        cache_key: String,
        response: HttpResponse,
        policy: CachePolicy,
    ) -> http_cache::Result<HttpResponse> {
        let ttl = policy.time_to_live(SystemTime::now()) + self.grace;
        if ttl.is_zero() {
            return Ok(response);
        }
        let stored = Stored { response, policy };
        let bytes = postcard::to_allocvec(&stored)?;
        let response = stored.response;
        if bytes.len() > LIMITS.max_value_bytes {
            tracing::info!(
                bytes = bytes.len(),
                limit = LIMITS.max_value_bytes,
                "response not cached: larger than the store's value limit"
            );
            return Ok(response);
        }
        match self
            .kv
            .set(&self.namespace, &Self::key(&cache_key), &bytes, Some(ttl))
            .await
        {
            Ok(()) => Ok(response),
            // DynamoDB counts the key and attribute names too: just under the limit may not fit.
            Err(Error::ValueTooLarge { size, limit, .. }) => {
                tracing::info!(
                    bytes = size,
                    limit,
                    "response not cached: larger than the store's value limit"
                );
                Ok(response)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, cache_key: &str) -> http_cache::Result<()> {
        self.kv
            .delete(&self.namespace, &Self::key(cache_key))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed_and_others_kept() {
        let short = "GET:https://example.com/a";
        assert_eq!(KvCacheManager::key(short), short);
        let long = format!("GET:https://example.com/{}", "x".repeat(600));
        let hashed = KvCacheManager::key(&long);
        assert_eq!(hashed.len(), 65);
        assert!(hashed.starts_with('#'));
        assert_ne!(KvCacheManager::key(&format!("{long}y")), hashed);
        // A key that looks like a hashed one is hashed too, so the two never meet.
        assert_ne!(KvCacheManager::key(&hashed), hashed);
    }
}
