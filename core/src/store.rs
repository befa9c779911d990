//! One object for a whole backend: [`Store`], every store trait at once.
//!
//! A backend is one database holding users, key-value items and tables, administered as one.
//! [`Store`] lets code hold it as one `Arc<DynStore>` (the facade's `Stores` does, whatever
//! the URL named) and hand out each part as its own trait object by upcasting, with no
//! per-backend code:
//!
//! ```
//! use std::sync::Arc;
//! use storekit_core::table::DynTableStore;
//! use storekit_core::{DynAuthStore, DynKvStore, DynStore, MemoryStore};
//!
//! let store: Arc<DynStore> = Arc::new(MemoryStore::new());
//! let auth: Arc<DynAuthStore> = store.clone();
//! let kv: Arc<DynKvStore> = store.clone();
//! let tables: Arc<DynTableStore> = store.clone();
//! assert_eq!(store.name(), "memory");
//! # let _ = (auth, kv, tables);
//! ```

use crate::admin::Admin;
use crate::backend::Backend;
use crate::table::TableStore;
use crate::transfer::TransferStore;
use crate::{AuthStore, KvStore};

/// Every store of one backend, and its administration: users with their OAuth accounts and
/// access tokens ([`AuthStore`]), key-value items ([`KvStore`]), tables of records
/// ([`TableStore`]), copying out and in ([`TransferStore`]), and migrations ([`Admin`]), with
/// the backend's name ([`Backend`]).
///
/// Implemented for every type that implements them all, so a backend never implements it
/// itself. Calls go through the part a caller needs: upcast `Arc<DynStore>` to
/// `Arc<dyn KvStore>` and so on (the module docs show how), which also keeps apart methods
/// that two parts name alike (`get`, `delete`, `id_kind`).
pub trait Store: Backend + AuthStore + KvStore + TableStore + TransferStore + Admin {}

impl<T> Store for T where
    T: Backend + AuthStore + KvStore + TableStore + TransferStore + Admin + ?Sized
{
}

/// The trait object of a whole backend: `Arc<DynStore>`, as [`DynKvStore`](crate::DynKvStore)
/// is the key-value store's.
pub type DynStore = dyn Store;
