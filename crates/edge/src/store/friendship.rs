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
#[derive(Debug, Clone)]
pub struct Locked {
    pub last_interaction: Option<DateTime<Utc>>,
    pub streak_day: i32,
    pub friendship_level: Level,
}

/// Creates the users that are new and locks every one's row until the
/// transaction ends, in one order for every caller (so batches of
/// overlapping users never deadlock): two round trips for any number of
/// users. Answers each user's row as it was before any change.
pub fn lock_users<'a>(
    db: &Db,
    user_ids: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, Locked>, DbError> {
    let ids: Vec<&str> = user_ids.into_iter().collect();
    let json = serde_json::to_string(&ids)
        .map_err(|e| DbError::decoding(format!("serialising user ids: {e}")))?;
    db.write(&friendship::ENSURE_USERS, &[P::Str(json)])?;
    let locked = locked_now(db, &ids)?;
    if let Some(missing) = ids.iter().find(|id| !locked.contains_key(**id)) {
        return Err(DbError::decoding(format!(
            "user {missing} vanished after its creation"
        )));
    }
    Ok(locked)
}

/// The rows of users already locked by [`lock_users`] in this transaction,
/// as they are now (one round trip, no wait); unknown users are absent.
pub fn locked_now(db: &Db, ids: &[&str]) -> Result<BTreeMap<String, Locked>, DbError> {
    let json = serde_json::to_string(ids)
        .map_err(|e| DbError::decoding(format!("serialising user ids: {e}")))?;
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
        #[serde(deserialize_with = "db::utc::option::deserialize")]
        last_interaction_date: Option<DateTime<Utc>>,
        streak_day: i32,
        #[serde(deserialize_with = "parsed::deserialize")]
        friendship_level: Level,
    }
    let rows: Vec<Row> = db.read(&friendship::LOCK_USERS, &[P::Str(json)])?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let locked = Locked {
                last_interaction: row.last_interaction_date,
                streak_day: row.streak_day,
                friendship_level: row.friendship_level,
            };
            (row.user_id, locked)
        })
        .collect())
}

/// [`lock_users`] for one user.
pub fn lock_user(db: &Db, user_id: &str) -> Result<Locked, DbError> {
    lock_users(db, [user_id])?
        .remove(user_id)
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

/// Applies changes to users locked by [`lock_users`] in the current
/// transaction, in one statement: increments in SQL, each change's history
/// and transition recorded with it, and each scored event marked. At most
/// one change per user (a scorer splits its batch into rounds). How many
/// changes moved their user's level.
pub fn apply_changes(db: &Db, changes: &[Change<'_>]) -> Result<u64, DbError> {
    #[derive(Serialize)]
    struct Wire<'a> {
        user_id: &'a str,
        score_change: f64,
        turns_increment: i64,
        streak_day: Option<i32>,
        last_emotion: Option<&'static str>,
        topics: &'a BTreeMap<String, TopicUpdate>,
        processing_id: Option<Uuid>,
        cause: &'static str,
        interaction: bool,
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = changes.iter().find(|c| !seen.insert(c.user_id)) {
        return Err(DbError::decoding(format!(
            "two changes of user {} in one statement",
            twice.user_id
        )));
    }
    let wire: Vec<Wire> = changes
        .iter()
        .map(|change| Wire {
            user_id: change.user_id,
            score_change: change.score_change,
            turns_increment: change.turns_increment,
            streak_day: change.streak_day,
            last_emotion: change.last_emotion.map(|e| e.as_str()),
            topics: change.topics,
            processing_id: change.processing_id,
            cause: change.cause.as_str(),
            interaction: matches!(change.cause, Cause::Conversation),
        })
        .collect();
    let json = serde_json::to_string(&wire)
        .map_err(|e| DbError::decoding(format!("serialising changes: {e}")))?;
    db.write(&friendship::APPLY_CHANGES, &[P::Str(json)])
}

/// [`apply_changes`] of one change; true when it moved the user's level.
pub fn apply_change(db: &Db, change: &Change<'_>) -> Result<bool, DbError> {
    Ok(apply_changes(db, std::slice::from_ref(change))? > 0)
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
