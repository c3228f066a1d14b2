//! The candidate cache in Spin key-value: one of `cache_slots` slots
//! (`candidates-slot:{n}`, [`candidates_key`]) holds a user's
//! [`CandidateRecord`] (with its own user, expiry, level and catalogue
//! version) and `catalogue:version` the catalogue version that records must
//! match.
//!
//! Key-value has no TTL, so freshness is decided by the record itself, and
//! the slots bound what the store holds: at most `cache_slots` records,
//! however many users are ever suggested, with no reclaiming pass. The
//! cache is an optimisation: when key-value fails, suggestions are computed
//! from Postgres and the failure is logged, never surfaced to the client.

use friendship_domain::{candidates_key, CandidateRecord, CATALOGUE_VERSION_KEY};
use spin_sdk::key_value::Store;

use crate::{config, log};

/// The default key-value store, or None (logged) when it cannot be opened
/// or `cache_slots` is not configured.
pub struct Cache {
    store: Option<Store>,
    slots: u32,
}

impl Cache {
    pub fn open() -> Cache {
        let slots = match config::number::<u32>("cache_slots") {
            Ok(slots) if slots > 0 => slots,
            Ok(_) => return Cache::failed("open", "cache_slots must be at least 1".into()),
            Err(e) => return Cache::failed("open", e.to_string()),
        };
        match Store::open_default() {
            Ok(store) => Cache {
                store: Some(store),
                slots,
            },
            Err(e) => Cache::failed("open", e.to_string()),
        }
    }

    /// No cache, the reason logged.
    fn failed(operation: &str, error: String) -> Cache {
        log::event(
            "cache_error",
            serde_json::json!({ "operation": operation, "error": error }),
        );
        Cache {
            store: None,
            slots: 1,
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

    /// A user's cached record, if its slot holds one of this user that
    /// parses (a record of an older format, or of another user, is a miss).
    pub fn candidates(&self, user_id: &str) -> Option<CandidateRecord> {
        let bytes = self.read(&candidates_key(user_id, self.slots))?;
        CandidateRecord::from_json(&bytes)
            .ok()
            .filter(|record| record.user_id == user_id)
    }

    /// Stores a record in its user's slot, in place of whatever it held.
    pub fn store_candidates(&self, record: &CandidateRecord) -> bool {
        self.write(
            &candidates_key(&record.user_id, self.slots),
            &record.to_json(),
        )
    }

    /// The catalogue version records must match, if known.
    pub fn catalogue_version(&self) -> Option<i64> {
        let bytes = self.read(CATALOGUE_VERSION_KEY)?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    pub fn set_catalogue_version(&self, version: i64) -> bool {
        self.write(CATALOGUE_VERSION_KEY, version.to_string().as_bytes())
    }

    /// Drops a user's candidates (its slot, whoever's record it holds: at
    /// worst another user's next suggest is a miss) and logs it.
    pub fn invalidate(&self, user_id: &str, reason: &str) -> bool {
        let ok = match self.store.as_ref() {
            Some(store) => store.delete(&candidates_key(user_id, self.slots)).is_ok(),
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
