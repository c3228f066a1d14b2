//! `fermyon:spin/key-value@2.0.0`, backed by Redis or memory.
//!
//! Spin's semantics (checked in spin v3.6 `crates/factor-key-value/src/host.rs`
//! and `crates/key-value-redis`):
//! - `open(label)` succeeds only for labels in the component's
//!   `key_value_stores`; any other label is `access-denied` (even a label that
//!   exists in the runtime config).
//! - No TTL: values live until deleted.
//! - The Redis provider ignores the label, writes keys exactly as given, and
//!   shares one auto-reconnecting connection (`ConnectionManager`) across all
//!   instances; `get-keys` is `KEYS *` over the whole Redis database.
//! - Every `open` of a Redis-backed store sends a `PING` on the shared
//!   connection and ignores its outcome (`RedisStore::after_open`, v3.6.3
//!   and v4.0.2): a round trip per open, which a component pays per request.
//! - Backend errors are `other(<message>)`.
//!
//! The memory backend (standing in for Spin's SQLite default) keeps one map
//! per label for the life of the [`App`](crate::host::App).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use tokio::sync::OnceCell;
use wasmtime::component::Resource;

use crate::host::bindings::fermyon::spin2_0_0::key_value as wit;
use crate::host::runtime_config::KvStoreConfig;
use crate::host::InstanceState;

/// One backing store.
pub enum Backend {
    /// Spin's Redis provider: one shared connection, made on first use.
    Redis {
        /// The configured URL.
        url: String,
        /// The shared connection.
        connection: OnceCell<redis::aio::ConnectionManager>,
    },
    /// In-memory map.
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
}

impl Backend {
    /// Creates the backend for a configured store.
    pub fn new(config: &KvStoreConfig) -> Self {
        match config {
            KvStoreConfig::Redis { url } => Backend::Redis {
                url: url.clone(),
                connection: OnceCell::new(),
            },
            KvStoreConfig::Memory => Backend::Memory(Mutex::new(BTreeMap::new())),
        }
    }

    async fn redis(&self) -> Result<Option<redis::aio::ConnectionManager>, wit::Error> {
        match self {
            Backend::Memory(_) => Ok(None),
            Backend::Redis { url, connection } => {
                let conn = connection
                    .get_or_try_init(|| async {
                        redis::Client::open(url.as_str())?
                            .get_connection_manager()
                            .await
                    })
                    .await
                    .map_err(other)?;
                Ok(Some(conn.clone()))
            }
        }
    }

    /// What Spin's Redis provider does after every `open` (`after_open`): a
    /// `PING`, whose failure is ignored (the connection reconnects on its
    /// own). Nothing for the memory backend.
    pub async fn after_open(&self) {
        if let Ok(Some(mut c)) = self.redis().await {
            let _: Result<(), _> = redis::cmd("PING").query_async(&mut c).await;
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        match self {
            Backend::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()),
            Backend::Redis { .. } => unreachable!("memory() on a Redis backend"),
        }
    }

    /// `get`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, wit::Error> {
        match self.redis().await? {
            Some(mut c) => c.get(key).await.map_err(other),
            None => Ok(self.memory().get(key).cloned()),
        }
    }

    /// `set`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), wit::Error> {
        match self.redis().await? {
            Some(mut c) => c.set(key, value).await.map_err(other),
            None => {
                self.memory().insert(key.to_string(), value.to_vec());
                Ok(())
            }
        }
    }

    /// `delete` (deleting a missing key is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), wit::Error> {
        match self.redis().await? {
            Some(mut c) => c.del(key).await.map_err(other),
            None => {
                self.memory().remove(key);
                Ok(())
            }
        }
    }

    /// `exists`.
    pub async fn exists(&self, key: &str) -> Result<bool, wit::Error> {
        match self.redis().await? {
            Some(mut c) => c.exists(key).await.map_err(other),
            None => Ok(self.memory().contains_key(key)),
        }
    }

    /// `get-keys`.
    pub async fn get_keys(&self) -> Result<Vec<String>, wit::Error> {
        match self.redis().await? {
            Some(mut c) => c.keys("*").await.map_err(other),
            None => Ok(self.memory().keys().cloned().collect()),
        }
    }
}

fn other(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Other(e.to_string())
}

/// All stores of one app, by label.
#[derive(Default)]
pub struct Stores {
    by_label: HashMap<String, Arc<Backend>>,
}

impl Stores {
    /// Builds the stores for the labels any component uses.
    pub fn new(labels: impl IntoIterator<Item = (String, KvStoreConfig)>) -> Self {
        Self {
            by_label: labels
                .into_iter()
                .map(|(label, config)| (label, Arc::new(Backend::new(&config))))
                .collect(),
        }
    }

    /// The backend behind a label.
    pub fn get(&self, label: &str) -> Option<Arc<Backend>> {
        self.by_label.get(label).cloned()
    }
}

/// An open store: the host side of the `store` resource.
pub struct StoreHandle {
    backend: Arc<Backend>,
}

impl wit::Host for InstanceState {}

impl wit::HostStore for InstanceState {
    async fn open(&mut self, label: String) -> Result<Resource<StoreHandle>, wit::Error> {
        if !self.component.key_value_stores.contains(&label) {
            return Err(wit::Error::AccessDenied);
        }
        let backend = self.shared.kv.get(&label).ok_or(wit::Error::NoSuchStore)?;
        backend.after_open().await;
        self.table
            .push(StoreHandle { backend })
            .map_err(|_| wit::Error::StoreTableFull)
    }

    async fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wit::Error> {
        self.kv_backend(&store)?.get(&key).await
    }

    async fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wit::Error> {
        self.kv_backend(&store)?.set(&key, &value).await
    }

    async fn delete(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> Result<(), wit::Error> {
        self.kv_backend(&store)?.delete(&key).await
    }

    async fn exists(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> Result<bool, wit::Error> {
        self.kv_backend(&store)?.exists(&key).await
    }

    async fn get_keys(&mut self, store: Resource<StoreHandle>) -> Result<Vec<String>, wit::Error> {
        self.kv_backend(&store)?.get_keys().await
    }

    async fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl InstanceState {
    fn kv_backend(&self, store: &Resource<StoreHandle>) -> Result<Arc<Backend>, wit::Error> {
        self.table
            .get(store)
            .map(|h| h.backend.clone())
            .map_err(|e| wit::Error::Other(format!("invalid store: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_backend_gets_sets_deletes_and_lists() {
        let b = Backend::new(&KvStoreConfig::Memory);
        assert_eq!(b.get("k").await.unwrap(), None);
        b.set("k", b"v").await.unwrap();
        assert!(b.exists("k").await.unwrap());
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(b.get_keys().await.unwrap(), vec!["k".to_string()]);
        b.delete("k").await.unwrap();
        b.delete("k").await.unwrap();
        assert!(!b.exists("k").await.unwrap());
    }

    #[tokio::test]
    async fn the_redis_backend_writes_keys_as_they_are() {
        let url = crate::host::test_support::redis_url(9);
        // A plain client, to read what the backend wrote: no prefix, no label.
        // Fails the test, naming the URL, when no Redis answers there.
        let mut c = crate::host::test_support::redis_connection(&url).await;
        let b = Backend::new(&KvStoreConfig::Redis { url: url.clone() });
        let key = format!("kv-test:{}", uuid::Uuid::new_v4());
        b.set(&key, b"value").await.unwrap();
        let raw: Option<Vec<u8>> = c.get(&key).await.unwrap();
        assert_eq!(raw.as_deref(), Some(&b"value"[..]));
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "Spin's key-value has no TTL");
        assert!(b.get_keys().await.unwrap().contains(&key));
        b.delete(&key).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), None);
    }
}
