//! Friendship status: reading it, and changing it atomically (a scored
//! conversation or a service update).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use friendship_domain::{Emotion, Level, TopicMetric, TopicUpdate};
use friendship_queries::friendship;
use serde::{Deserialize, Deserializer, Serialize};
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, DbError};
use crate::store::parsed;

/// A user's friendship status, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub user_id: String,
    pub friendship_score: f64,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub friendship_level: Level,
    #[serde(rename = "last_interaction_date")]
    #[serde(deserialize_with = "db::utc::option::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339_option")]
    pub last_interaction: Option<DateTime<Utc>>,
    pub streak_day: i32,
    pub total_turns: i64,
    #[serde(deserialize_with = "json_text")]
    pub topic_metrics: BTreeMap<String, TopicMetric>,
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "parsed::option::deserialize")]
    pub last_emotion: Option<Emotion>,
}

/// A JSONB column read as `::text`.
fn json_text<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

pub fn status(db: &Db, user_id: &str) -> Result<Option<Status>, DbError> {
    db.read_one(&friendship::GET_STATUS, &[P::Str(user_id.to_owned())])
}

/// The current level of a user (a stranger when unknown).
pub fn level(db: &Db, user_id: &str) -> Result<Level, DbError> {
    #[derive(Deserialize)]
    struct Row {
        #[serde(deserialize_with = "parsed::deserialize")]
        friendship_level: Level,
    }
    Ok(db
        .read_one::<Row>(&friendship::GET_LEVEL, &[P::Str(user_id.to_owned())])?
        .map_or(Level::Stranger, |row| row.friendship_level))
}

/// A user's row, locked for a change, as it was before it.
#[derive(Debug, Deserialize)]
pub struct Locked {
    #[serde(rename = "last_interaction_date")]
    #[serde(deserialize_with = "db::utc::option::deserialize")]
    pub last_interaction: Option<DateTime<Utc>>,
    pub streak_day: i32,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub friendship_level: Level,
}

/// Creates the user when new and locks their row until the transaction ends.
pub fn lock_user(db: &Db, user_id: &str) -> Result<Locked, DbError> {
    db.write(&friendship::ENSURE_USER, &[P::Str(user_id.to_owned())])?;
    db.read_one(&friendship::LOCK_USER, &[P::Str(user_id.to_owned())])?
        .ok_or_else(|| DbError::decoding(format!("user {user_id} vanished after its creation")))
}

/// A change to apply to a user's status.
pub struct Change<'a> {
    pub user_id: &'a str,
    pub score_change: f64,
    pub turns_increment: i64,
    /// The new streak, or None to keep it.
    pub streak_day: Option<i32>,
    pub last_emotion: Option<Emotion>,
    pub topics: &'a BTreeMap<String, TopicUpdate>,
    /// The scored event, for conversations.
    pub processing_id: Option<Uuid>,
    pub cause: Cause,
}

/// Why a score changed; stored in the history.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Conversation,
    ServiceUpdate,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Conversation => "conversation",
            Cause::ServiceUpdate => "service_update",
        }
    }
}

/// The status after a change, and the level before it.
#[derive(Debug)]
pub struct Changed {
    pub status: Status,
    pub previous_level: Level,
}

impl Changed {
    pub fn level_changed(&self) -> bool {
        self.previous_level != self.status.friendship_level
    }
}

/// Applies a change to a user locked by [`lock_user`] in the current
/// transaction: increments in SQL, history and transition recorded with it.
/// True when the change moved the user's level.
pub fn apply_change(db: &Db, change: &Change<'_>) -> Result<bool, DbError> {
    let topics = serde_json::to_string(change.topics)
        .map_err(|e| DbError::decoding(format!("serialising topic updates: {e}")))?;
    let transitions = db.write(
        &friendship::APPLY_CHANGE,
        &[
            P::Str(change.user_id.to_owned()),
            P::Floating64(change.score_change),
            P::Int64(change.turns_increment),
            change.streak_day.map(P::Int32).unwrap_or(P::DbNull),
            db::text_or_null(change.last_emotion.map(|e| e.as_str())),
            P::Str(topics),
            change
                .processing_id
                .map(db::uuid_param)
                .unwrap_or(P::DbNull),
            P::Str(change.cause.as_str().to_owned()),
            P::Boolean(matches!(change.cause, Cause::Conversation)),
        ],
    )?;
    Ok(transitions > 0)
}

/// The status after a change of a locked user, with the level before it.
pub fn changed(db: &Db, user_id: &str, locked: &Locked) -> Result<Changed, DbError> {
    let status = status(db, user_id)?
        .ok_or_else(|| DbError::decoding(format!("no status row for {user_id} after a change")))?;
    Ok(Changed {
        status,
        previous_level: locked.friendship_level,
    })
}

/// A service update: creates the user when new and applies the change, in one transaction.
pub fn apply_service_update(
    db: &Db,
    user_id: &str,
    score_change: f64,
    topics: &BTreeMap<String, TopicUpdate>,
) -> Result<Changed, DbError> {
    db.transaction(|db| {
        let locked = lock_user(db, user_id)?;
        apply_change(
            db,
            &Change {
                user_id,
                score_change,
                turns_increment: 0,
                streak_day: None,
                last_emotion: None,
                topics,
                processing_id: None,
                cause: Cause::ServiceUpdate,
            },
        )?;
        changed(db, user_id, &locked)
    })
}
