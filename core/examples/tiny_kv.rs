//! A complete key-value backend in one file, which passes storekit's conformance suite.
//!
//! A backend implements `KvBackend`, whose arguments storekit has already checked, and gets
//! `KvStore` (rules, expiry, spans and error context included) for free. Run it with
//! `cargo run -p storekit-core --example tiny_kv`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use storekit_conformance::{Fixture, SetupContext, Suite, run_suite};
use storekit_core::admin::{Admin, MigrationReport, SchemaDifference};
use storekit_core::backend::{Backend, Expiry, Items, Key, Keys, KvBackend, Namespace};
use storekit_core::kv::counter;
use storekit_core::time::{is_live, now_millis};
use storekit_core::{MemoryStore, Result, async_trait};

/// (namespace, key) to (value, deadline in Unix milliseconds).
type Map = BTreeMap<(String, String), (Vec<u8>, Option<i64>)>;

/// One ordered map behind one lock: every call is atomic.
#[derive(Debug, Default, Clone)]
struct TinyKv(Arc<Mutex<Map>>);

impl TinyKv {
    fn map(&self) -> MutexGuard<'_, Map> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn slot(namespace: &str, key: &str) -> (String, String) {
    (namespace.to_owned(), key.to_owned())
}

/// The live value in `map` under `namespace` and `key`.
fn live<'m>(map: &'m Map, namespace: &str, key: &str) -> Option<&'m [u8]> {
    let (value, expires) = map.get(&slot(namespace, key))?;
    is_live(*expires, now_millis()).then_some(value.as_slice())
}

impl Backend for TinyKv {
    fn name(&self) -> &'static str {
        "tiny"
    }

    fn system(&self) -> &'static str {
        "tiny"
    }
}

#[async_trait]
impl KvBackend for TinyKv {
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        Ok(live(&self.map(), &namespace, &key).map(<[u8]>::to_vec))
    }

    async fn set(
        &self,
        ns: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        self.map()
            .insert(slot(&ns, &key), (value.to_vec(), expiry.millis()));
        Ok(())
    }

    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let removed = self.map().remove(&slot(&namespace, &key));
        Ok(removed.is_some_and(|(_, expires)| is_live(expires, now_millis())))
    }

    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        Ok(live(&self.map(), &namespace, &key).is_some())
    }

    async fn get_many(&self, ns: Namespace<'_>, keys: Keys<'_>) -> Result<Vec<Option<Vec<u8>>>> {
        let map = self.map();
        Ok(keys
            .iter()
            .map(|key| live(&map, &ns, key).map(<[u8]>::to_vec))
            .collect())
    }

    async fn set_many(&self, ns: Namespace<'_>, items: Items<'_>, expiry: Expiry) -> Result<()> {
        let mut map = self.map();
        for (key, value) in items.iter() {
            map.insert(slot(&ns, key), (value.to_vec(), expiry.millis()));
        }
        Ok(())
    }

    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()> {
        let mut map = self.map();
        for key in keys.iter() {
            map.remove(&slot(&namespace, key));
        }
        Ok(())
    }

    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>> {
        let now = now_millis();
        let keys: Vec<Result<String>> = self
            .map()
            .range(slot(&namespace, prefix)..)
            .take_while(|((ns, key), _)| *ns == *namespace && key.starts_with(prefix))
            .filter(|(_, (_, expires))| is_live(*expires, now))
            .map(|((_, key), _)| Ok(key.clone()))
            .collect();
        stream::iter(keys).boxed()
    }

    async fn clear(&self, namespace: Namespace<'_>) -> Result<()> {
        self.map().retain(|(ns, _), _| *ns != *namespace);
        Ok(())
    }

    async fn set_if_absent(
        &self,
        ns: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let mut map = self.map();
        if live(&map, &ns, &key).is_some() {
            return Ok(false);
        }
        map.insert(slot(&ns, &key), (value.to_vec(), expiry.millis()));
        Ok(true)
    }

    async fn compare_and_swap(
        &self,
        ns: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let mut map = self.map();
        if live(&map, &ns, &key) != Some(expected) {
            return Ok(false);
        }
        map.insert(slot(&ns, &key), (new.to_vec(), expiry.millis()));
        Ok(true)
    }

    async fn increment(
        &self,
        ns: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        let mut map = self.map();
        let value = counter::add(live(&map, &ns, &key), delta)?;
        // A live counter keeps its deadline; a new one gets the caller's.
        let expires = match map.get(&slot(&ns, &key)) {
            Some((_, expires)) if is_live(*expires, now_millis()) => *expires,
            _ => expiry.millis(),
        };
        map.insert(slot(&ns, &key), (counter::encode(value), expires));
        Ok(value)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let mut map = self.map();
        let before = map.len();
        let now = now_millis();
        map.retain(|_, (_, expires)| is_live(*expires, now));
        Ok((before - map.len()) as u64)
    }

    async fn set_expiry(&self, ns: Namespace<'_>, key: Key<'_>, expiry: Expiry) -> Result<bool> {
        let mut map = self.map();
        match map.get_mut(&slot(&ns, &key)) {
            Some((_, expires)) if is_live(*expires, now_millis()) => {
                *expires = expiry.millis();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get_stored(
        &self,
        ns: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        Ok(self.map().get(&slot(&ns, &key)).cloned())
    }
}

/// Nothing to migrate or compare: the map lives in this process. `dump` shows what it holds,
/// for the cases that check what is stored (the conformance fixture reads it).
#[async_trait]
impl Admin for TinyKv {
    async fn migrate_report(&self) -> Result<MigrationReport> {
        Ok(MigrationReport::default())
    }

    async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        Ok(Vec::new())
    }

    async fn drop_tables(&self) -> Result<()> {
        self.map().clear();
        Ok(())
    }

    async fn dump(&self) -> Result<String> {
        Ok(format!("{:?}", self.map()))
    }
}

async fn setup(_ctx: SetupContext) -> Option<Fixture> {
    let kv = Arc::new(TinyKv::default());
    // The key-value cases use only `kv`; the fixture's user store is a stand-in.
    Some(Fixture::parts(Arc::new(MemoryStore::new()), kv.clone(), kv))
}

#[tokio::main]
async fn main() {
    run_suite(Suite::Kv, setup).await;
}
