//! Friendship status: reading it, and changing it atomically (a scored
//! conversation, a service update, or a day of inactivity decay).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
pub use friendship_domain::{Cause, Change, Decay, Limits, Locked};
use friendship_domain::{Emotion, Level, TopicMetric, TopicUpdate};
use friendship_queries::friendship;
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;

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
    #[serde(deserialize_with = "crate::store::json_text")]
    pub topic_metrics: BTreeMap<String, TopicMetric>,
    #[serde(skip_serializing)]
    #[serde(deserialize_with = "parsed::option::deserialize")]
    pub last_emotion: Option<Emotion>,
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
    let rows: Vec<Locked> = db.read(&friendship::LOCK_USERS, &[P::Str(json)])?;
    Ok(rows
        .into_iter()
        .map(|row| (row.user_id.clone(), row))
        .collect())
}

/// [`lock_users`] for one user.
pub fn lock_user(db: &Db, user_id: &str) -> Result<Locked, DbError> {
    lock_users(db, [user_id])?
        .remove(user_id)
        .ok_or_else(|| DbError::decoding(format!("user {user_id} vanished after its creation")))
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
pub fn apply_changes(db: &Db, changes: &[Change]) -> Result<u64, DbError> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = changes.iter().find(|c| !seen.insert(c.user_id.as_str())) {
        return Err(DbError::decoding(format!(
            "two changes of user {} in one statement",
            twice.user_id
        )));
    }
    let json = serde_json::to_string(changes)
        .map_err(|e| DbError::decoding(format!("serialising changes: {e}")))?;
    db.write(&friendship::APPLY_CHANGES, &[P::Str(json)])
}

/// [`apply_changes`] of one change; true when it moved the user's level.
pub fn apply_change(db: &Db, change: &Change) -> Result<bool, DbError> {
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

/// A service update: creates the user when new and applies the change, in
/// one transaction. Never capped by the daily score cap (the operator's
/// tool); its topics are kept within `max_topics_per_user`.
pub fn apply_service_update(
    db: &Db,
    user_id: &str,
    score_change: f64,
    topics: &BTreeMap<String, TopicUpdate>,
    max_topics_per_user: u16,
) -> Result<Changed, DbError> {
    db.transaction(|db| {
        let locked = lock_user(db, user_id)?;
        apply_change(
            db,
            &Change::service_update(user_id, score_change, topics.clone(), max_topics_per_user),
        )?;
        changed(db, user_id, &locked)
    })
}

/// One bounded batch of inactivity decay, in one transaction: claims up to
/// `limit` users due a day of decay (`friendship::CLAIM_DECAY`, `FOR UPDATE
/// SKIP LOCKED`), applies one day to each through [`apply_changes`] (the
/// floor at 0, the history line, the level transition and its outbox row,
/// as for any change) and answers how many users decayed and, for those
/// whose level moved, the status after it (for [`crate::cache::after_change`],
/// after the commit).
pub fn apply_decay(
    db: &Db,
    decay: &Decay,
    max_topics_per_user: u16,
    limit: usize,
) -> Result<(usize, Vec<Changed>), DbError> {
    db.transaction(|db| {
        let users: Vec<Locked> = db.read(
            &friendship::CLAIM_DECAY,
            &[
                P::Int32(i32::from(decay.after_days)),
                P::Int64(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        if users.is_empty() {
            return Ok((0, Vec::new()));
        }
        let changes: Vec<Change> = users
            .iter()
            .map(|user| Change::decay(&user.user_id, decay, max_topics_per_user))
            .collect();
        let moved = apply_changes(db, &changes)?;
        let mut changed = Vec::new();
        if moved > 0 {
            let ids: Vec<&str> = users.iter().map(|user| user.user_id.as_str()).collect();
            let now = locked_now(db, &ids)?;
            for user in &users {
                if now
                    .get(&user.user_id)
                    .is_some_and(|row| row.friendship_level != user.friendship_level)
                {
                    changed.push(self::changed(db, &user.user_id, user)?);
                }
            }
        }
        Ok((users.len(), changed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use friendship_domain::{CandidateRecord, Limits, TopicName, UserId};

    /// The documented worst case (README, "Bounded per-user state") of the
    /// status answer's bytes with `max_topics_per_user` at its default.
    const WORST_STATUS_BYTES: usize = 50_986;
    /// The same for the cached record without its agents.
    const WORST_RECORD_BYTES_WITHOUT_AGENTS: usize = 51_082;

    /// A valid name of `chars` characters that JSON escapes as `\u00XX`
    /// (6 bytes each), distinct for each `n`: no longer one can be written.
    fn worst_name(n: usize, chars: usize) -> String {
        // Control characters that are not whitespace (never trimmed) and
        // have no two-byte escape (\b, \t, \n, \f, \r).
        let six: Vec<char> = (1u8..0x20)
            .filter(|b| ![0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d].contains(b))
            .map(char::from)
            .collect();
        let mut name: Vec<char> = vec![six[0]; chars];
        name[0] = six[n % six.len()];
        name[chars - 1] = six[(n / six.len()) % six.len()];
        name.into_iter().collect()
    }

    #[test]
    fn the_status_answer_and_the_cached_record_stay_within_their_documented_worst_case() {
        let max = usize::from(Limits::DEFAULT.max_topics_per_user);
        let last_date = Utc
            .with_ymd_and_hms(9998, 12, 31, 23, 59, 59)
            .unwrap()
            .checked_add_signed(chrono::Duration::nanoseconds(999_999_999))
            .unwrap();
        let topics: BTreeMap<String, TopicMetric> = (0..max)
            .map(|n| {
                let name = TopicName::parse(&worst_name(n, TopicName::MAX_CHARS)).unwrap();
                (
                    name.into_string(),
                    TopicMetric {
                        // The longest a non-negative double is written.
                        score: 2.2250738585072014e-308,
                        total_turns: i64::MAX as u64,
                        last_date,
                    },
                )
            })
            .collect();
        assert_eq!(topics.len(), max, "distinct names");
        let user_id = UserId::parse(&worst_name(0, UserId::MAX_CHARS)).unwrap();
        let status = Status {
            user_id: user_id.as_str().to_owned(),
            friendship_score: 2.2250738585072014e-308,
            friendship_level: Level::Acquaintance,
            last_interaction: Some(last_date),
            streak_day: i32::MAX,
            total_turns: i64::MAX,
            topic_metrics: topics.clone(),
            last_emotion: Some(Emotion::Interesting),
        };
        let status_bytes = serde_json::to_string(&status).unwrap().len();
        let topic_bytes = serde_json::to_string(&topics).unwrap().len();
        let record = CandidateRecord::build(
            user_id.as_str(),
            Level::Acquaintance,
            i64::MAX,
            Vec::new(),
            topics,
            Some(last_date),
            Some(Emotion::Interesting),
            last_date,
            chrono::Duration::zero(),
        );
        let record_bytes = serde_json::to_string(&record).unwrap().len();
        println!("topic_metrics {topic_bytes} B, status {status_bytes} B, record {record_bytes} B");
        // 100 entries of 499 bytes, 99 commas, 2 braces.
        assert_eq!(topic_bytes, 100 * 499 + 99 + 2);
        assert_eq!(status_bytes, WORST_STATUS_BYTES);
        assert_eq!(record_bytes, WORST_RECORD_BYTES_WITHOUT_AGENTS);
    }
}
