//! The outbox of level changes (`friendship_queries::level_changes`): the
//! relay's claim of unpublished ones, and their mark once published.

use chrono::{DateTime, Utc};
use friendship_domain::{Cause, Level};
use friendship_queries::level_changes;
use serde::Deserialize;
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, DbError};
use crate::store::parsed;

/// A level transition waiting to be published: a row of
/// `level_changes::CLAIM_UNPUBLISHED`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelChange {
    /// The transition's id: what consumers deduplicate on.
    pub id: i64,
    pub user_id: String,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub from_level: Level,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub to_level: Level,
    /// The score after the change.
    pub score: f64,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub cause: Cause,
    /// The event, when a conversation caused it.
    pub processing_id: Option<Uuid>,
    /// When the transition committed.
    #[serde(deserialize_with = "db::utc::deserialize")]
    pub at: DateTime<Utc>,
}

/// Claims up to `limit` unpublished level changes, oldest first, locked
/// until the caller's transaction ends (rows another relay holds are
/// skipped).
pub fn claim_unpublished(db: &Db, limit: usize) -> Result<Vec<LevelChange>, DbError> {
    db.read(
        &level_changes::CLAIM_UNPUBLISHED,
        &[P::Int64(i64::try_from(limit).unwrap_or(i64::MAX))],
    )
}

/// Marks level changes published; how many were unpublished.
pub fn mark_published(db: &Db, ids: &[i64]) -> Result<u64, DbError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(ids)
        .map_err(|e| DbError::decoding(format!("serialising transition ids: {e}")))?;
    db.write(&level_changes::MARK_PUBLISHED, &[P::Str(json)])
}
