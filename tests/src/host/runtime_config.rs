//! `runtime-config.toml` (Spin's runtime configuration file), key-value part.
//!
//! Spin format: `[key_value_store.<label>]` with `type = "redis"` and
//! `url = "redis://…"` (Spin's Redis provider), or `type = "spin"` (Spin's
//! built-in SQLite store, optionally with `path`). Without an entry, Spin
//! backs the `default` label with SQLite in `.spin/sqlite_key_value.db`.
//!
//! This host backs `type = "redis"` with Redis exactly like Spin (keys as-is,
//! the label ignored, one shared connection) and everything else — including
//! an unconfigured `default` — with an in-memory map per label that lives as
//! long as the [`App`](crate::host::App): fine for tests, but unlike Spin's
//! SQLite file it does not survive a restart. Other sections of the file
//! (`[sqlite_database.*]`, `[variables_provider]`, …) are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the runtime config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A store type this host does not implement.
    #[error("key_value_store.{label}: type {kind:?} is not supported (use \"redis\" or \"spin\")")]
    UnsupportedStore {
        /// The store label.
        label: String,
        /// The configured type.
        kind: String,
    },
}

/// How one key-value label is backed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvStoreConfig {
    /// Spin's Redis provider at this URL.
    Redis {
        /// `redis://host:port[/db]`.
        url: String,
    },
    /// Spin's built-in store; here an in-memory map.
    Memory,
}

/// The parts of `runtime-config.toml` this host uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Explicitly configured key-value stores by label.
    pub key_value_stores: BTreeMap<String, KvStoreConfig>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
}

#[derive(Deserialize)]
struct RawStore {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
}

impl RuntimeConfig {
    /// Reads a runtime config file.
    pub fn from_file(path: &Path) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            RuntimeConfigError::Parse { source, .. } => RuntimeConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses runtime config text.
    pub fn parse(text: &str) -> Result<Self, RuntimeConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| RuntimeConfigError::Parse {
            path: PathBuf::from("runtime-config.toml"),
            source,
        })?;
        let mut key_value_stores = BTreeMap::new();
        for (label, store) in raw.key_value_store {
            let config = match (store.kind.as_str(), store.url) {
                ("redis", Some(url)) => KvStoreConfig::Redis { url },
                ("spin", _) => KvStoreConfig::Memory,
                (kind, _) => {
                    return Err(RuntimeConfigError::UnsupportedStore {
                        label,
                        kind: kind.to_string(),
                    })
                }
            };
            key_value_stores.insert(label, config);
        }
        Ok(Self { key_value_stores })
    }

    /// How `label` is backed, or `None` when the label is not defined (only
    /// `default` is implicitly defined, as in Spin).
    pub fn store(&self, label: &str) -> Option<KvStoreConfig> {
        match self.key_value_stores.get(label) {
            Some(c) => Some(c.clone()),
            None if label == "default" => Some(KvStoreConfig::Memory),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_default_store_is_read_from_spins_format() {
        let rc = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/1\"\n",
        )
        .unwrap();
        assert_eq!(
            rc.store("default"),
            Some(KvStoreConfig::Redis {
                url: "redis://127.0.0.1:6379/1".into()
            })
        );
    }

    #[test]
    fn without_a_file_only_the_default_label_exists_and_is_in_memory() {
        let rc = RuntimeConfig::default();
        assert_eq!(rc.store("default"), Some(KvStoreConfig::Memory));
        assert_eq!(rc.store("other"), None);
    }

    #[test]
    fn an_unknown_store_type_is_rejected() {
        let err =
            RuntimeConfig::parse("[key_value_store.x]\ntype = \"azure_cosmos\"\n").unwrap_err();
        assert!(matches!(err, RuntimeConfigError::UnsupportedStore { .. }));
    }

    #[test]
    fn unrelated_sections_are_ignored() {
        let rc = RuntimeConfig::parse("[sqlite_database.default]\ntype = \"spin\"\n").unwrap();
        assert!(rc.key_value_stores.is_empty());
    }
}
