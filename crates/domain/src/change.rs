//! What one event (or one service update) changes in a user's friendship
//! status, and the locked row it is planned from: each shape defined here
//! once, and everyone (the scorer, the service update, the native tests)
//! uses these types.
//!
//! - [`Locked`] is a row of `friendship::LOCK_USERS` (it decodes one, unknown
//!   columns refused).
//! - [`Change`] is one element of the JSON array `friendship::APPLY_CHANGES`
//!   reads with `jsonb_to_recordset`; a native test checks that the
//!   statement's column list names exactly the fields this type writes
//!   (`jsonb_to_recordset` would silently ignore any other key).
//! - [`plan`] computes a conversation's change from the row as the events
//!   before it left it; [`Locked::after`] is the row as a change leaves it
//!   (what the statement does, stated for the user's next event in the same
//!   batch; a native test compares it with the row read back).
//! - [`rounds`] splits a batch into statements: round `k` holds the `k`-th
//!   event of each user, so one statement changes each user at most once.
//!
//! Adding a rule to how a change is applied: see `docs/architecture.md`
//! ("Adding a rule to how a change is applied").

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::error::string_enum;
use crate::event::{ConversationMetadata, Emotion};
use crate::level::Level;
use crate::scoring::{conversation_score_change, topic_updates, TopicUpdate};
use crate::streak::next_streak;

string_enum! {
    /// Why a score changed; stored in the history and the level transitions.
    pub enum Cause (field = "cause") {
        Conversation => "conversation",
        ServiceUpdate => "service_update",
        Decay => "decay",
    }
}

/// A user's row, locked for a change, as it was before it: a row of
/// `friendship::LOCK_USERS`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub user_id: String,
    /// Read as a plain UTC `timestamp` (`AT TIME ZONE 'UTC'`).
    #[serde(rename = "last_interaction_date", deserialize_with = "naive_utc")]
    pub last_interaction: Option<DateTime<Utc>>,
    pub streak_day: i32,
    pub friendship_level: Level,
}

fn naive_utc<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<NaiveDateTime>::deserialize(d)?.map(|t| t.and_utc()))
}

/// The bounds every change keeps, from the deployment's variables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The most topics a user keeps (`max_topics_per_user`, at least 1):
    /// past it, the least recently engaged go (ties: the name that sorts
    /// last in byte order goes first), in the statement that merges them.
    pub max_topics_per_user: u16,
    /// The most points conversations may add to a user's score per UTC day
    /// (`daily_score_cap`); 0 turns the cap off. Service updates are never
    /// capped.
    pub daily_score_cap: f64,
}

impl Limits {
    /// The defaults of `spin.toml`.
    pub const DEFAULT: Limits = Limits {
        max_topics_per_user: 100,
        daily_score_cap: 450.0,
    };

    /// The cap a conversation's change carries: None when the cap is off.
    pub fn conversation_cap(&self) -> Option<f64> {
        (self.daily_score_cap > 0.0).then_some(self.daily_score_cap)
    }
}

/// One change to apply to a user's status: an element of the JSON array
/// `friendship::APPLY_CHANGES` reads (its documentation says what each field
/// does there).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub user_id: String,
    pub score_change: f64,
    pub turns_increment: i64,
    /// The new streak, or None to keep it.
    pub streak_day: Option<i32>,
    /// None keeps the last emotion.
    pub last_emotion: Option<Emotion>,
    pub topics: BTreeMap<String, TopicUpdate>,
    /// The scored event, which the statement marks; None for a service update.
    pub processing_id: Option<Uuid>,
    pub cause: Cause,
    /// An interaction sets the last interaction to the transaction's `now()`.
    pub interaction: bool,
    /// The most topics the user keeps after this change
    /// ([`Limits::max_topics_per_user`]).
    pub max_topics: i32,
    /// The day's budget of score gain ([`Limits::daily_score_cap`]): the
    /// statement applies at most what is left of it on the user's UTC day;
    /// None applies `score_change` whole (a service update, or the cap off).
    /// What a conversation applies counts towards the day whatever this is.
    pub daily_score_cap: Option<f64>,
}

/// Inactivity decay, from the deployment's variables: a user who has not
/// talked for more than `after_days` whole days loses `points_per_day` per
/// further day, never below 0, one change (and history line) per day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decay {
    /// The days of absence without decay (`decay_after_days`).
    pub after_days: u16,
    /// The points one day of decay takes (`decay_points_per_day`); 0 turns
    /// decay off.
    pub points_per_day: f64,
}

impl Decay {
    /// The defaults of `spin.toml`: off.
    pub const OFF: Decay = Decay {
        after_days: 14,
        points_per_day: 0.0,
    };

    pub fn is_on(&self) -> bool {
        self.points_per_day > 0.0
    }
}

impl Change {
    /// One day of inactivity decay of `user_id` (claimed as due by
    /// `friendship::CLAIM_DECAY`): `points_per_day` off the score (floored at
    /// 0 by the statement), no interaction, no event, never capped; the
    /// statement counts the day on the user's row.
    pub fn decay(user_id: &str, decay: &Decay, max_topics_per_user: u16) -> Change {
        Change {
            user_id: user_id.to_owned(),
            score_change: -decay.points_per_day,
            turns_increment: 0,
            streak_day: None,
            last_emotion: None,
            topics: BTreeMap::new(),
            processing_id: None,
            cause: Cause::Decay,
            interaction: false,
            max_topics: i32::from(max_topics_per_user),
            daily_score_cap: None,
        }
    }

    /// A service update: score and topics only, no interaction, no event;
    /// never capped by the daily score cap (the operator's tool), but the
    /// user's topics kept within `max_topics_per_user`.
    pub fn service_update(
        user_id: &str,
        score_change: f64,
        topics: BTreeMap<String, TopicUpdate>,
        max_topics_per_user: u16,
    ) -> Change {
        Change {
            user_id: user_id.to_owned(),
            score_change,
            turns_increment: 0,
            streak_day: None,
            last_emotion: None,
            topics,
            processing_id: None,
            cause: Cause::ServiceUpdate,
            interaction: false,
            max_topics: i32::from(max_topics_per_user),
            daily_score_cap: None,
        }
    }
}

/// The change conversation `processing_id` (its `metadata`, scored at the
/// transaction's `now`) makes for a user whose row is `locked`, within
/// `limits`.
pub fn plan(
    locked: &Locked,
    processing_id: Uuid,
    metadata: &ConversationMetadata,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Change {
    let streak = next_streak(
        locked.last_interaction.map(|t| t.date_naive()),
        locked.streak_day.max(0) as u32,
        now.date_naive(),
    );
    Change {
        user_id: locked.user_id.clone(),
        score_change: conversation_score_change(metadata),
        turns_increment: i64::from(metadata.total_turns.get()),
        streak_day: Some(i32::try_from(streak).unwrap_or(i32::MAX)),
        last_emotion: Some(metadata.emotion),
        topics: topic_updates(metadata, now),
        processing_id: Some(processing_id),
        cause: Cause::Conversation,
        interaction: true,
        max_topics: i32::from(limits.max_topics_per_user),
        daily_score_cap: limits.conversation_cap(),
    }
}

impl Locked {
    /// The row as `change` leaves it when applied at `now` (the
    /// transaction's `now()`), with `level` the level after it (which only
    /// the statement knows): what the next change of the same user in the
    /// batch is planned from.
    pub fn after(&self, change: &Change, now: DateTime<Utc>, level: Level) -> Locked {
        Locked {
            user_id: self.user_id.clone(),
            last_interaction: if change.interaction {
                Some(now)
            } else {
                self.last_interaction
            },
            streak_day: change.streak_day.unwrap_or(self.streak_day),
            friendship_level: level,
        }
    }
}

/// Splits a batch of events (their users, in the batch's order) into rounds
/// of indexes: round `k` holds the `k`-th event of each user, so a round
/// changes each user once and a user's events apply in order.
pub fn rounds<'a>(users: impl IntoIterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, user) in users.into_iter().enumerate() {
        let round = seen.entry(user).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn locked() -> Locked {
        serde_json::from_str(
            r#"{"user_id":"u","last_interaction_date":"2026-03-01T08:00:00.5",
                "streak_day":2,"friendship_level":"acquaintance"}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_locked_row_decodes_strictly() {
        let row = locked();
        assert_eq!(
            row.last_interaction,
            Some(
                Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
                    + chrono::Duration::milliseconds(500)
            )
        );
        assert!(serde_json::from_str::<Locked>(
            r#"{"user_id":"u","last_interaction_date":null,"streak_day":0,
                "friendship_level":"stranger","extra":1}"#
        )
        .is_err());
    }

    #[test]
    fn a_conversation_the_next_day_extends_the_streak_and_the_row_carries_it() {
        let metadata: ConversationMetadata = serde_json::from_str(
            r#"{"total_turns":4,"user_initiated_questions":1,"emotion":"happy",
                "new_memories_count":0,"topics":[{"name":"music","turns":3,"user_questions":1}]}"#,
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let id = Uuid::nil();
        let change = plan(&locked(), id, &metadata, now, &Limits::DEFAULT);
        assert_eq!(change.streak_day, Some(3));
        assert_eq!(
            (change.max_topics, change.daily_score_cap),
            (100, Some(450.0))
        );
        assert_eq!(change.score_change, 15.0);
        assert!(change.interaction);
        let after = locked().after(&change, now, Level::Friend);
        assert_eq!(after.last_interaction, Some(now));
        assert_eq!(after.streak_day, 3);
        assert_eq!(after.friendship_level, Level::Friend);
        let kept = locked().after(
            &Change::service_update("u", 1.0, BTreeMap::new(), 100),
            now,
            Level::Friend,
        );
        assert_eq!(kept.last_interaction, locked().last_interaction);
        assert_eq!(kept.streak_day, 2);
    }

    #[test]
    fn rounds_hold_each_users_kth_event() {
        assert_eq!(
            rounds(["a", "a", "a", "b", "c", "c"]),
            vec![vec![0, 3, 4], vec![1, 5], vec![2]]
        );
        assert!(rounds([]).is_empty());
    }

    #[test]
    fn a_change_serialises_every_field() {
        let json =
            serde_json::to_value(Change::service_update("u", 1.5, BTreeMap::new(), 100)).unwrap();
        assert_eq!(json["cause"], "service_update");
        assert_eq!(json["interaction"], false);
        assert!(json["streak_day"].is_null());
        assert_eq!(json["max_topics"], 100);
        assert!(
            json["daily_score_cap"].is_null(),
            "a service update is never capped"
        );
    }

    #[test]
    fn a_day_of_decay_takes_its_points_and_is_no_interaction() {
        let decay = Decay {
            after_days: 3,
            points_per_day: 2.5,
        };
        assert!(decay.is_on() && !Decay::OFF.is_on());
        let change = Change::decay("u", &decay, 100);
        assert_eq!(change.score_change, -2.5);
        assert_eq!(change.cause, Cause::Decay);
        assert!(!change.interaction && change.processing_id.is_none());
        assert!(change.daily_score_cap.is_none() && change.topics.is_empty());
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["cause"], "decay");
        let now = Utc::now();
        let kept = locked().after(&change, now, Level::Stranger);
        assert_eq!(kept.last_interaction, locked().last_interaction);
        assert_eq!(kept.streak_day, 2);
    }

    #[test]
    fn a_cap_of_zero_leaves_conversations_uncapped() {
        let off = Limits {
            max_topics_per_user: 7,
            daily_score_cap: 0.0,
        };
        assert_eq!(off.conversation_cap(), None);
        assert_eq!(Limits::DEFAULT.conversation_cap(), Some(450.0));
        let metadata: ConversationMetadata = serde_json::from_str(
            r#"{"total_turns":4,"user_initiated_questions":1,"emotion":"happy",
                "new_memories_count":0,"topics":[]}"#,
        )
        .unwrap();
        let change = plan(&locked(), Uuid::nil(), &metadata, Utc::now(), &off);
        assert_eq!((change.max_topics, change.daily_score_cap), (7, None));
    }
}
