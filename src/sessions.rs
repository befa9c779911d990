//! A [`tower-sessions`](https://docs.rs/tower-sessions) session store on any [`KvStore`]
//! (feature `tower-sessions`), so an axum service keeps its sessions in SQLite, PostgreSQL or
//! DynamoDB, and `axum-login` works on top of it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use storekit::sessions::KvSessionStore;
//! use tower_sessions::{Expiry, SessionManagerLayer, cookie::time::Duration};
//!
//! # async fn run() -> storekit::Result<()> {
//! let stores = storekit::connect("sqlite://app.db").await?;
//! stores.migrate().await?;
//! let sessions = KvSessionStore::new(stores.kv());   // namespace "sessions"
//! let layer = SessionManagerLayer::new(sessions)
//!     .with_expiry(Expiry::OnInactivity(Duration::hours(12)));
//! # let _ = layer; Ok(()) }
//! ```
//!
//! What it promises, on every backend:
//! - [`SessionStore::create`] never overwrites a session: the record is stored with
//!   [`KvStore::set_if_absent`], and on an id collision the record gets a fresh random id and is
//!   tried again, as the trait asks.
//! - A session's expiry date is its item's TTL, so an expired session is never loaded, even
//!   before anything deletes it. A record saved with an expiry date already past is deleted
//!   rather than stored.
//! - [`ExpiredDeletion::delete_expired`] is the store's [`KvStore::purge_expired`], which deletes
//!   the expired items of every namespace (on SQL backends a background task already does so
//!   every minute; on DynamoDB its native TTL does, and the call does nothing).
//! - A record is stored as MessagePack of its data and expiry date, under its id (the 22
//!   characters of its cookie value); the id is not repeated in the value.
//!
//! The host crate's error type can only carry text, so a storekit error reaches it as
//! `Error::Backend` with the error's message (the kind and the call are in the message); it is
//! also logged with its sources at `WARN`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storekit_core::{DynKvStore, Error, KvStore, async_trait, validate};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// The namespace sessions are kept in unless another is given.
pub const DEFAULT_NAMESPACE: &str = "sessions";

/// How many fresh ids `create` tries before giving up. Ids are 128 random bits, so even one
/// collision means something is wrong with the random source; a few tries cover bad luck.
const CREATE_ATTEMPTS: usize = 8;

/// Sessions of `tower-sessions` in a [`KvStore`] namespace. Cheap to clone.
#[derive(Clone)]
pub struct KvSessionStore {
    kv: Arc<DynKvStore>,
    namespace: String,
}

impl std::fmt::Debug for KvSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSessionStore")
            .field("kv", &self.kv)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl KvSessionStore {
    /// Sessions in the namespace [`DEFAULT_NAMESPACE`] of `kv`.
    #[must_use]
    pub fn new(kv: Arc<DynKvStore>) -> Self {
        Self {
            kv,
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Sessions in `namespace` of `kv`; [`Error::InvalidInput`] if the namespace is not one.
    pub fn with_namespace(
        kv: Arc<DynKvStore>,
        namespace: impl Into<String>,
    ) -> storekit_core::Result<Self> {
        let namespace = namespace.into();
        validate::check_namespace(&namespace)?;
        Ok(Self { kv, namespace })
    }

    /// The namespace the sessions are in.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key-value store the sessions are in.
    #[must_use]
    pub fn kv(&self) -> &Arc<DynKvStore> {
        &self.kv
    }
}

/// What is stored of a record: its data and expiry date (the id is the key).
#[derive(Serialize, Deserialize)]
struct Stored<D> {
    data: D,
    /// The expiry date in Unix seconds and nanoseconds, exact.
    expires: (i64, u32),
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    let stored = Stored {
        data: &record.data,
        expires: (
            record.expiry_date.unix_timestamp(),
            record.expiry_date.nanosecond(),
        ),
    };
    rmp_serde::to_vec(&stored).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn decode(id: Id, bytes: &[u8]) -> session_store::Result<Record> {
    let stored: Stored<_> =
        rmp_serde::from_slice(bytes).map_err(|e| session_store::Error::Decode(e.to_string()))?;
    let (secs, nanos) = stored.expires;
    let expiry_date = OffsetDateTime::from_unix_timestamp(secs)
        .map(|at| at + time::Duration::nanoseconds(i64::from(nanos)))
        .map_err(|e| session_store::Error::Decode(e.to_string()))?;
    Ok(Record {
        id,
        data: stored.data,
        expiry_date,
    })
}

/// The TTL of a record saved now; `None` if its expiry date has passed.
fn ttl(record: &Record) -> Option<Duration> {
    let left = record.expiry_date - OffsetDateTime::now_utc();
    Duration::try_from(left).ok().filter(|ttl| !ttl.is_zero())
}

// By value: it is `map_err`'s argument.
#[allow(clippy::needless_pass_by_value)]
fn backend(err: Error) -> session_store::Error {
    tracing::warn!(
        error = &err as &dyn std::error::Error,
        "storekit session store call failed"
    );
    session_store::Error::Backend(err.to_string())
}

#[async_trait]
impl SessionStore for KvSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let bytes = encode(record)?;
        let Some(ttl) = ttl(record) else {
            // Expired on arrival: there is nothing to keep, and its id must not be loaded.
            return Ok(());
        };
        for _ in 0..CREATE_ATTEMPTS {
            let key = record.id.to_string();
            let stored = self
                .kv
                .set_if_absent(&self.namespace, &key, &bytes, Some(ttl))
                .await
                .map_err(backend)?;
            if stored {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(format!(
            "no free session id after {CREATE_ATTEMPTS} random ids"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = record.id.to_string();
        match ttl(record) {
            Some(ttl) => {
                let bytes = encode(record)?;
                self.kv
                    .set(&self.namespace, &key, &bytes, Some(ttl))
                    .await
                    .map_err(backend)
            }
            None => self
                .kv
                .delete(&self.namespace, &key)
                .await
                .map(drop)
                .map_err(backend),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let bytes = self
            .kv
            .get(&self.namespace, &id.to_string())
            .await
            .map_err(backend)?;
        let Some(bytes) = bytes else { return Ok(None) };
        let record = decode(*id, &bytes)?;
        // The TTL already hides expired items; the record's own date is checked as well so a
        // clock step between save and load cannot hand out a session past its date.
        Ok((record.expiry_date > OffsetDateTime::now_utc()).then_some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.kv
            .delete(&self.namespace, &id.to_string())
            .await
            .map(drop)
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for KvSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.kv.purge_expired().await.map(drop).map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_exactly_and_compactly() -> session_store::Result<()> {
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        record.data.insert(
            "user".to_owned(),
            storekit_core::serde_json::json!({"id": 7, "name": "Zoë"}),
        );
        let bytes = encode(&record)?;
        assert_eq!(decode(record.id, &bytes)?, record);
        // The data (27 bytes of MessagePack here) plus the date; no JSON field names.
        assert!(bytes.len() < 50, "{} bytes", bytes.len());
        Ok(())
    }
}
