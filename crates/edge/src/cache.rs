//! The candidate cache in Spin key-value: `candidates:{user_id}` holds a
//! [`CandidateRecord`] (with its own expiry, level and catalogue version) and
//! `catalogue:version` the catalogue version that records must match.
//!
//! Key-value has no TTL, so freshness is decided by the record itself. The
//! cache is an optimisation: when key-value fails, suggestions are computed
//! from Postgres and the failure is logged, never surfaced to the client.

use friendship_domain::{candidates_key, CandidateRecord, CATALOGUE_VERSION_KEY};
use spin_sdk::key_value::Store;

use crate::log;

/// The default key-value store, or None (logged) when it cannot be opened.
pub struct Cache {
    store: Option<Store>,
}

impl Cache {
    pub fn open() -> Cache {
        match Store::open_default() {
            Ok(store) => Cache { store: Some(store) },
            Err(e) => {
                log::event(
                    "cache_error",
                    serde_json::json!({ "operation": "open", "error": e.to_string() }),
                );
                Cache { store: None }
            }
        }
    }

    fn read(&self, key: &str) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        match store.get(key) {
            Ok(value) => value,
            Err(e) => {
                log::event(
                    "cache_error",
                    serde_json::json!({ "operation": "get", "key": key, "error": e.to_string() }),
                );
                None
            }
        }
    }

    fn write(&self, key: &str, value: &[u8]) -> bool {
        let Some(store) = self.store.as_ref() else {
            return false;
        };
        match store.set(key, value) {
            Ok(()) => true,
            Err(e) => {
                log::event(
                    "cache_error",
                    serde_json::json!({ "operation": "set", "key": key, "error": e.to_string() }),
                );
                false
            }
        }
    }

    /// A user's cached record, if one parses (a record of an older format is a miss).
    pub fn candidates(&self, user_id: &str) -> Option<CandidateRecord> {
        let bytes = self.read(&candidates_key(user_id))?;
        CandidateRecord::from_json(&bytes).ok()
    }

    pub fn store_candidates(&self, record: &CandidateRecord) -> bool {
        self.write(&candidates_key(&record.user_id), &record.to_json())
    }

    /// The catalogue version records must match, if known.
    pub fn catalogue_version(&self) -> Option<i64> {
        let bytes = self.read(CATALOGUE_VERSION_KEY)?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    pub fn set_catalogue_version(&self, version: i64) -> bool {
        self.write(CATALOGUE_VERSION_KEY, version.to_string().as_bytes())
    }

    /// Drops a user's candidates and logs it.
    pub fn invalidate(&self, user_id: &str, reason: &str) -> bool {
        let ok = match self.store.as_ref() {
            Some(store) => store.delete(&candidates_key(user_id)).is_ok(),
            None => false,
        };
        log::cache_invalidation(user_id, reason, ok);
        ok
    }
}

/// The one consequence of a change that moved a user's level, whoever made
/// it (the scorer or a service update): the transition is logged and the
/// user's cached candidates, computed for the old level, are dropped. False
/// when they could not be (the key-value store failed).
pub fn after_change(changed: &crate::store::Changed, cause: crate::store::Cause) -> bool {
    if !changed.level_changed() {
        return true;
    }
    let status = &changed.status;
    log::level_transition(
        &status.user_id,
        changed.previous_level.as_str(),
        status.friendship_level.as_str(),
        status.friendship_score,
        cause.as_str(),
    );
    Cache::open().invalidate(&status.user_id, "level_changed")
}
