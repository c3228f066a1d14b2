//! How a conversation moves the friendship score and the per-topic metrics:
//! every figure of the formula (points per turn, question and memory, the
//! emotion bonus) is here and nowhere else.
//!
//! The database applies these numbers (increments happen in SQL); this
//! module is the one definition of what they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{json_finite, json_whole, ValidationError};
use crate::event::{ConversationMetadata, Count, Emotion, MAX_COUNT};
use crate::level::floor_score;
use crate::timestamp::{client_timestamp, stored_timestamp};

/// Score points per conversation turn (overall and per topic).
pub const POINTS_PER_TURN: f64 = 0.5;
/// Score points per question the user asked (overall and per topic).
pub const POINTS_PER_QUESTION: f64 = 3.0;
/// Score points per new memory formed.
pub const POINTS_PER_MEMORY: f64 = 5.0;
/// Largest magnitude of a score change accepted from a client
/// (`friendship_score_change`, `score_change`): generous, yet far from where
/// floating-point sums lose whole points.
pub const MAX_SCORE_CHANGE: f64 = 1_000_000_000.0;

impl Emotion {
    /// Score points this emotion adds to a conversation's score change:
    /// interesting +15, boring -15, happy +10, sad -5, neutral 0.
    pub fn bonus(self) -> f64 {
        match self {
            Emotion::Interesting => 15.0,
            Emotion::Boring => -15.0,
            Emotion::Happy => 10.0,
            Emotion::Sad => -5.0,
            Emotion::Neutral => 0.0,
        }
    }
}

/// Points of engagement: `turns*0.5 + questions*3`, the part of the formula
/// a conversation and each of its topics share.
fn engagement_points(turns: Count, questions: Count) -> f64 {
    f64::from(turns.get()) * POINTS_PER_TURN + f64::from(questions.get()) * POINTS_PER_QUESTION
}

/// Score change of one conversation, in points:
/// `total_turns*0.5 + user_initiated_questions*3 + emotion bonus +
/// new_memories_count*5`, floored at 0 (a conversation never lowers the score).
pub fn conversation_score_change(m: &ConversationMetadata) -> f64 {
    let raw = engagement_points(m.total_turns, m.user_initiated_questions)
        + m.emotion.bonus()
        + f64::from(m.new_memories_count.get()) * POINTS_PER_MEMORY;
    floor_score(raw)
}

/// Checks a client-supplied score change: finite and within ±[`MAX_SCORE_CHANGE`].
pub fn validate_score_change(value: f64, field: &str) -> Result<f64, ValidationError> {
    if value.is_finite() && value.abs() <= MAX_SCORE_CHANGE {
        Ok(value)
    } else {
        Err(ValidationError::new(
            field,
            format!("{field} must be a finite number between -{MAX_SCORE_CHANGE} and {MAX_SCORE_CHANGE}"),
        ))
    }
}

/// A change to one topic's metrics: add `score_change` points and
/// `turns_increment` turns, and set `last_date`. Also the wire form of the
/// values of `/friendship/update`'s `topic_metrics_update` (strict:
/// finite `score_change` within ±1e9, `turns_increment` a whole number in
/// `0..=1_000_000`, `last_date` RFC 3339 written with a year from 0001 to
/// 9998).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TopicUpdateWire")]
pub struct TopicUpdate {
    pub score_change: f64,
    pub turns_increment: u64,
    pub last_date: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with score_change, turns_increment and last_date"
)]
struct TopicUpdateWire {
    score_change: Value,
    turns_increment: Value,
    last_date: Value,
}

impl TryFrom<TopicUpdateWire> for TopicUpdate {
    type Error = ValidationError;
    fn try_from(wire: TopicUpdateWire) -> Result<Self, Self::Error> {
        let score_change = validate_score_change(
            json_finite(&wire.score_change, "score_change").map_err(|_| {
                ValidationError::new("score_change", "score_change must be a finite number")
            })?,
            "score_change",
        )?;
        let turns_increment = json_whole(&wire.turns_increment)
            .filter(|n| *n <= u64::from(MAX_COUNT))
            .ok_or_else(|| {
                ValidationError::new(
                    "turns_increment",
                    format!("turns_increment must be an integer between 0 and {MAX_COUNT}"),
                )
            })?;
        let last_date = client_timestamp(&wire.last_date, "last_date")?;
        Ok(TopicUpdate {
            score_change,
            turns_increment,
            last_date,
        })
    }
}

/// Per-topic changes of one conversation, keyed by topic name: per topic
/// `score_change = turns*0.5 + user_questions*3`, `turns_increment = turns`,
/// `last_date = now`. A topic named more than once adds up its entries.
pub fn topic_updates(
    m: &ConversationMetadata,
    now: DateTime<Utc>,
) -> BTreeMap<String, TopicUpdate> {
    let mut updates: BTreeMap<String, TopicUpdate> = BTreeMap::new();
    for topic in &m.topics {
        let update = updates
            .entry(topic.name.as_str().to_owned())
            .or_insert(TopicUpdate {
                score_change: 0.0,
                turns_increment: 0,
                last_date: now,
            });
        update.score_change += engagement_points(topic.turns, topic.user_questions);
        update.turns_increment += u64::from(topic.turns.get());
    }
    updates
}

/// A user's accumulated engagement with one topic, as stored in
/// `friendship_status.topic_metrics` and returned by `/friendship/status`:
/// summed score points (finite; the SQL merge floors it at 0),
/// summed turns, and the time of the last change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TopicMetricWire")]
pub struct TopicMetric {
    pub score: f64,
    pub total_turns: u64,
    pub last_date: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with score, total_turns and last_date"
)]
struct TopicMetricWire {
    score: Value,
    total_turns: Value,
    last_date: Value,
}

impl TryFrom<TopicMetricWire> for TopicMetric {
    type Error = ValidationError;
    fn try_from(wire: TopicMetricWire) -> Result<Self, Self::Error> {
        let score = json_finite(&wire.score, "score")?;
        // Postgres numeric arithmetic on JSONB may render a whole number as
        // `8.0`; that is still an exact count, so it is accepted.
        let total_turns = json_whole(&wire.total_turns).ok_or_else(|| {
            ValidationError::new("total_turns", "total_turns must be a non-negative integer")
        })?;
        let last_date = stored_timestamp(&wire.last_date, "last_date")?;
        Ok(TopicMetric {
            score,
            total_turns,
            last_date,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::arb_metadata;
    use crate::event::{Count, Emotion, TopicTurns};
    use crate::ids::TopicName;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn metadata(
        turns: u64,
        questions: u64,
        emotion: Emotion,
        memories: u64,
    ) -> ConversationMetadata {
        ConversationMetadata {
            total_turns: Count::new(turns).unwrap(),
            user_initiated_questions: Count::new(questions).unwrap(),
            emotion,
            new_memories_count: Count::new(memories).unwrap(),
            topics: vec![],
        }
    }

    #[test]
    fn the_api_example_scores_27_points() {
        // 12*0.5 + 2*3 + 10 (happy) + 1*5
        assert_eq!(
            conversation_score_change(&metadata(12, 2, Emotion::Happy, 1)),
            27.0
        );
    }

    #[test]
    fn every_emotion_carries_its_bonus() {
        let bonuses: Vec<(Emotion, f64)> = Emotion::ALL.iter().map(|e| (*e, e.bonus())).collect();
        assert_eq!(
            bonuses,
            [
                (Emotion::Interesting, 15.0),
                (Emotion::Boring, -15.0),
                (Emotion::Happy, 10.0),
                (Emotion::Sad, -5.0),
                (Emotion::Neutral, 0.0)
            ]
        );
    }

    #[test]
    fn literal_cases_score_their_literal_points() {
        for (turns, questions, emotion, memories, expected) in [
            (0, 0, Emotion::Neutral, 0, 0.0),
            (1, 0, Emotion::Neutral, 0, 0.5),
            (0, 1, Emotion::Neutral, 0, 3.0),
            (0, 0, Emotion::Neutral, 1, 5.0),
            (0, 0, Emotion::Interesting, 0, 15.0),
            (40, 0, Emotion::Boring, 0, 5.0),
            (10, 1, Emotion::Sad, 0, 3.0),
            (
                1_000_000,
                1_000_000,
                Emotion::Interesting,
                1_000_000,
                8_500_015.0,
            ),
        ] {
            assert_eq!(
                conversation_score_change(&metadata(turns, questions, emotion, memories)),
                expected,
                "{turns} turns, {questions} questions, {emotion}, {memories} memories"
            );
        }
    }

    #[test]
    fn each_emotion_adds_its_bonus() {
        for (emotion, expected) in [
            (Emotion::Interesting, 25.0),
            (Emotion::Boring, 0.0),
            (Emotion::Happy, 20.0),
            (Emotion::Sad, 5.0),
            (Emotion::Neutral, 10.0),
        ] {
            assert_eq!(
                conversation_score_change(&metadata(20, 0, emotion, 0)),
                expected,
                "{emotion}"
            );
        }
    }

    #[test]
    fn a_short_boring_conversation_scores_zero_not_negative() {
        assert_eq!(
            conversation_score_change(&metadata(2, 0, Emotion::Boring, 0)),
            0.0
        );
        assert_eq!(
            conversation_score_change(&metadata(0, 0, Emotion::Sad, 0)),
            0.0
        );
    }

    #[test]
    fn topic_updates_follow_the_per_topic_formula() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let mut m = metadata(12, 2, Emotion::Happy, 0);
        m.topics = vec![
            TopicTurns {
                name: TopicName::parse("music").unwrap(),
                turns: Count::new(8).unwrap(),
                user_questions: Count::new(1).unwrap(),
            },
            TopicTurns {
                name: TopicName::parse("space").unwrap(),
                turns: Count::new(3).unwrap(),
                user_questions: Count::ZERO,
            },
        ];
        let updates = topic_updates(&m, now);
        assert_eq!(
            updates["music"],
            TopicUpdate {
                score_change: 7.0,
                turns_increment: 8,
                last_date: now
            }
        );
        assert_eq!(updates["space"].score_change, 1.5);
        assert_eq!(updates.len(), 2);
    }

    #[test]
    fn a_topic_named_twice_adds_up_its_entries() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let mut m = metadata(12, 2, Emotion::Happy, 0);
        let topic = |name: &str, turns, questions| TopicTurns {
            name: TopicName::parse(name).unwrap(),
            turns: Count::new(turns).unwrap(),
            user_questions: Count::new(questions).unwrap(),
        };
        m.topics = vec![
            topic("music", 8, 1),
            topic("space", 3, 0),
            topic(" music ", 1_000_000, 2),
        ];
        let updates = topic_updates(&m, now);
        assert_eq!(
            updates["music"],
            TopicUpdate {
                score_change: 7.0 + 500_006.0,
                turns_increment: 1_000_008,
                last_date: now
            }
        );
        assert_eq!(updates.len(), 2);
    }

    #[test]
    fn a_topic_update_decodes_strictly() {
        let ok = r#"{"score_change": -2.5, "turns_increment": 3, "last_date": "2026-11-22T12:00:00+02:00"}"#;
        let update: TopicUpdate = serde_json::from_str(ok).unwrap();
        assert_eq!(
            update.last_date,
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
        );
        // JSON does not tell 26842 from 26842.0; -00:19 is an offset like any other.
        let whole = r#"{"score_change": 1, "turns_increment": 26842.0, "last_date": "2026-11-22T10:00:00-00:19"}"#;
        let update: TopicUpdate = serde_json::from_str(whole).unwrap();
        assert_eq!(update.turns_increment, 26842);
        assert_eq!(
            update.last_date,
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 19, 0).unwrap()
        );
        for (bad, expected) in [
            (
                r#"{"score_change": "1", "turns_increment": 3, "last_date": "2026-11-22T10:00:00Z"}"#,
                "score_change must be a finite number",
            ),
            (
                r#"{"score_change": 1e12, "turns_increment": 3, "last_date": "2026-11-22T10:00:00Z"}"#,
                "score_change must be a finite number between",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1.5, "last_date": "2026-11-22T10:00:00Z"}"#,
                "turns_increment must be an integer between 0 and 1000000",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1000001, "last_date": "2026-11-22T10:00:00Z"}"#,
                "turns_increment must be an integer",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1, "last_date": "yesterday"}"#,
                "last_date must be an RFC 3339 timestamp",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1, "last_date": "9999-12-31T23:59:59-00:19"}"#,
                "last_date must be an RFC 3339 timestamp with a year from 0001 to 9998",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1, "last_date": "2026-11-22 10:00:00Z"}"#,
                "last_date must be an RFC 3339 timestamp",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1, "last_date": "2026-11-22T10:00:00Z", "x": 0}"#,
                "unknown field `x`",
            ),
            (
                r#"{"score_change": 1, "turns_increment": 1}"#,
                "missing field `last_date`",
            ),
        ] {
            let err = serde_json::from_str::<TopicUpdate>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn a_topic_metric_accepts_a_whole_number_written_as_a_float() {
        let metric: TopicMetric = serde_json::from_str(
            r#"{"score": 4.5, "total_turns": 8.0, "last_date": "2026-11-22T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(metric.total_turns, 8);
        for bad in [
            r#"{"score": 4.5, "total_turns": 8.5, "last_date": "2026-11-22T10:00:00Z"}"#,
            r#"{"score": 4.5, "total_turns": -1, "last_date": "2026-11-22T10:00:00Z"}"#,
            r#"{"score": null, "total_turns": 1, "last_date": "2026-11-22T10:00:00Z"}"#,
        ] {
            assert!(serde_json::from_str::<TopicMetric>(bad).is_err(), "{bad}");
        }
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..4_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
    }

    proptest! {
        #[test]
        fn a_conversation_score_change_is_never_negative(m in arb_metadata()) {
            let change = conversation_score_change(&m);
            prop_assert!(change >= 0.0 && change.is_finite() && change.is_sign_positive());
        }

        /// Above the floor, one more turn, question or memory adds exactly
        /// 0.5, 3 or 5 points (the figures of the contract, not the code's).
        #[test]
        fn each_turn_question_and_memory_adds_its_points(m in arb_metadata()) {
            let base = conversation_score_change(&m);
            prop_assume!(base > 0.0);
            let plus = |count: Count| Count::new(u64::from(count.get()) + 1).unwrap();
            let mut more = m.clone();
            if more.total_turns.get() < MAX_COUNT {
                more.total_turns = plus(m.total_turns);
                prop_assert_eq!(conversation_score_change(&more), base + 0.5);
            }
            let mut more = m.clone();
            if more.user_initiated_questions.get() < MAX_COUNT {
                more.user_initiated_questions = plus(m.user_initiated_questions);
                prop_assert_eq!(conversation_score_change(&more), base + 3.0);
            }
            let mut more = m.clone();
            if more.new_memories_count.get() < MAX_COUNT {
                more.new_memories_count = plus(m.new_memories_count);
                prop_assert_eq!(conversation_score_change(&more), base + 5.0);
            }
        }

        /// Topics score `turns*0.5 + user_questions*3` each, whatever the
        /// conversation's emotion and memories.
        #[test]
        fn topic_updates_score_each_topic_by_its_turns_and_questions(
            m in arb_metadata(), now in arb_time(),
        ) {
            let updates = topic_updates(&m, now);
            prop_assert_eq!(updates.len(), m.topics.len());
            for topic in &m.topics {
                let update = &updates[topic.name.as_str()];
                let (turns, questions) = (topic.turns.get(), topic.user_questions.get());
                prop_assert_eq!(update.score_change, f64::from(turns) * 0.5 + f64::from(questions) * 3.0);
                prop_assert_eq!(update.turns_increment, u64::from(turns));
                prop_assert_eq!(update.last_date, now);
            }
        }

        #[test]
        fn topic_updates_round_trip_through_json(
            score_change in -1e9f64..1e9, turns_increment in 0u64..=1_000_000, last_date in arb_time()
        ) {
            let update = TopicUpdate { score_change, turns_increment, last_date };
            let json = serde_json::to_string(&update).unwrap();
            prop_assert_eq!(serde_json::from_str::<TopicUpdate>(&json).unwrap(), update);
        }

        #[test]
        fn topic_metrics_round_trip_through_json(
            score in -1e12f64..1e12, total_turns in 0u64..1_000_000_000, last_date in arb_time()
        ) {
            let metric = TopicMetric { score, total_turns, last_date };
            let json = serde_json::to_string(&metric).unwrap();
            prop_assert_eq!(serde_json::from_str::<TopicMetric>(&json).unwrap(), metric);
        }
    }
}
