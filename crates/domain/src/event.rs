//! The conversation-end event (what `POST /conversations/end` accepts and
//! Postgres stores as the payload) and the `Doorbell` the scorer hears on
//! Redis.
//!
//! Decoding is strict: unknown fields are refused and every value is
//! validated, with a message naming its field path (`metadata.total_turns`).

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::{json_whole, string_enum, ValidationError};
use crate::ids::{ConversationId, TopicName, UserId};

string_enum! {
    /// The user's dominant emotion in a conversation.
    pub enum Emotion (field = "emotion") {
        Interesting => "interesting",
        Boring => "boring",
        Happy => "happy",
        Sad => "sad",
        Neutral => "neutral",
    }
}

// What an emotion is worth lives with the rest of the score formula, in
// `scoring` (`Emotion::bonus`).
impl Emotion {
    pub(crate) fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        let raw = value.as_str().unwrap_or("");
        Emotion::parse_as(raw, field)
    }
}

/// Largest count (turns, questions, memories) accepted.
pub const MAX_COUNT: u32 = 1_000_000;
/// Most topics one conversation may report.
pub const MAX_TOPICS: usize = 50;

/// A count of turns, questions or memories: an integer in `0..=1_000_000`.
/// Decodes from a whole JSON number (`12`, or `12.0`, the same number to
/// JSON); `1.5`, `-1`, `"1"` are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "Value")]
pub struct Count(u32);

impl Count {
    pub const ZERO: Count = Count(0);

    pub fn new(value: u64) -> Result<Self, ValidationError> {
        Self::new_as(value, "count")
    }

    /// Like [`Count::new`], naming `field` in the error.
    pub fn new_as(value: u64, field: &str) -> Result<Self, ValidationError> {
        u32::try_from(value)
            .ok()
            .filter(|v| *v <= MAX_COUNT)
            .map(Count)
            .ok_or_else(|| Self::error(field))
    }

    pub(crate) fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
        json_whole(value).map_or_else(|| Err(Self::error(field)), |n| Self::new_as(n, field))
    }

    fn error(field: &str) -> ValidationError {
        ValidationError::new(
            field,
            format!("{field} must be an integer between 0 and {MAX_COUNT}"),
        )
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<Value> for Count {
    type Error = ValidationError;
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Count::from_json(&value, "count")
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

/// A conversation has ended: who, which conversation, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConversationEndWire")]
pub struct ConversationEnd {
    pub user_id: UserId,
    pub conversation_id: ConversationId,
    pub metadata: ConversationMetadata,
}

/// What a conversation contained. Serialises to its normalised form (every
/// default written out, topics in the order given), which is the payload
/// stored in Postgres: two posts that differ only by an omitted default
/// serialise identically. Invariant: at most [`MAX_TOPICS`] topics. A topic
/// may be named more than once: its entries add up when scored
/// ([`crate::topic_updates`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MetadataWire")]
pub struct ConversationMetadata {
    pub total_turns: Count,
    pub user_initiated_questions: Count,
    pub emotion: Emotion,
    /// 0 when omitted (or null).
    pub new_memories_count: Count,
    /// Empty when omitted (or null).
    pub topics: Vec<TopicTurns>,
}

impl ConversationMetadata {
    /// Checks the invariants that span fields (the topic list).
    pub fn validate(&self) -> Result<(), ValidationError> {
        const FIELD: &str = "metadata.topics";
        if self.topics.len() > MAX_TOPICS {
            return Err(ValidationError::new(
                FIELD,
                format!("{FIELD} must have at most {MAX_TOPICS} entries"),
            ));
        }
        Ok(())
    }
}

/// Engagement with one topic during a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TopicTurnsWire")]
pub struct TopicTurns {
    pub name: TopicName,
    pub turns: Count,
    pub user_questions: Count,
}

impl TopicTurns {
    fn from_wire(wire: &TopicTurnsWire, prefix: &str) -> Result<Self, ValidationError> {
        Ok(TopicTurns {
            name: TopicName::from_json(&wire.name, &format!("{prefix}name"))?,
            turns: Count::from_json(&wire.turns, &format!("{prefix}turns"))?,
            user_questions: Count::from_json(
                &wire.user_questions,
                &format!("{prefix}user_questions"),
            )?,
        })
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with user_id, conversation_id and metadata"
)]
struct ConversationEndWire {
    user_id: Value,
    conversation_id: Value,
    metadata: ConversationMetadata,
}

impl TryFrom<ConversationEndWire> for ConversationEnd {
    type Error = ValidationError;
    fn try_from(wire: ConversationEndWire) -> Result<Self, Self::Error> {
        Ok(ConversationEnd {
            user_id: UserId::from_json(&wire.user_id, "user_id")?,
            conversation_id: ConversationId::from_json(&wire.conversation_id, "conversation_id")?,
            metadata: wire.metadata,
        })
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "metadata: an object with total_turns, user_initiated_questions and emotion"
)]
struct MetadataWire {
    total_turns: Value,
    user_initiated_questions: Value,
    emotion: Value,
    new_memories_count: Option<Value>,
    topics: Option<Value>,
}

impl TryFrom<MetadataWire> for ConversationMetadata {
    type Error = ValidationError;
    fn try_from(wire: MetadataWire) -> Result<Self, Self::Error> {
        let topics = match wire.topics {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_TOPICS {
                    return Err(ValidationError::new(
                        "metadata.topics",
                        format!("metadata.topics must have at most {MAX_TOPICS} entries"),
                    ));
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        let prefix = format!("metadata.topics[{index}]");
                        let wire = serde_json::from_value::<TopicTurnsWire>(item).map_err(|e| {
                            ValidationError::new(prefix.clone(), format!("{prefix}: {e}"))
                        })?;
                        TopicTurns::from_wire(&wire, &format!("{prefix}."))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => {
                return Err(ValidationError::new(
                    "metadata.topics",
                    "metadata.topics must be a list of {name, turns, user_questions} objects",
                ))
            }
        };
        let metadata = ConversationMetadata {
            total_turns: Count::from_json(&wire.total_turns, "metadata.total_turns")?,
            user_initiated_questions: Count::from_json(
                &wire.user_initiated_questions,
                "metadata.user_initiated_questions",
            )?,
            emotion: Emotion::from_json(&wire.emotion, "metadata.emotion")?,
            new_memories_count: match wire.new_memories_count {
                None | Some(Value::Null) => Count::ZERO,
                Some(value) => Count::from_json(&value, "metadata.new_memories_count")?,
            },
            topics,
        };
        metadata.validate()?;
        Ok(metadata)
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with name, turns and user_questions"
)]
struct TopicTurnsWire {
    name: Value,
    turns: Value,
    user_questions: Value,
}

impl TryFrom<TopicTurnsWire> for TopicTurns {
    type Error = ValidationError;
    fn try_from(wire: TopicTurnsWire) -> Result<Self, Self::Error> {
        TopicTurns::from_wire(&wire, "")
    }
}

/// The scorer's wake-up call on Redis. It only says "look": the scorer
/// always claims every due event from Postgres, not just the one named.
/// JSON: `{"kind":"recorded","processing_id":"<uuid>"}` or `{"kind":"tick"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "DoorbellWire")]
pub enum Doorbell {
    /// An event was just recorded; `processing_id` is its UUID (hyphenated hex).
    Recorded { processing_id: String },
    /// No particular event: claim whatever is due (redrive, retries).
    Tick,
}

impl Doorbell {
    pub fn to_json(&self) -> Vec<u8> {
        // Two string fields at most: serialising cannot fail.
        serde_json::to_vec(self).expect("a doorbell always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with kind (and processing_id)"
)]
struct DoorbellWire {
    kind: String,
    processing_id: Option<String>,
}

impl TryFrom<DoorbellWire> for Doorbell {
    type Error = ValidationError;
    fn try_from(wire: DoorbellWire) -> Result<Self, Self::Error> {
        match (wire.kind.as_str(), wire.processing_id) {
            ("recorded", Some(id)) if is_hyphenated_uuid(&id) => {
                Ok(Doorbell::Recorded { processing_id: id })
            }
            ("recorded", Some(_)) => Err(ValidationError::new(
                "processing_id",
                "processing_id must be a hyphenated UUID",
            )),
            ("recorded", None) => Err(ValidationError::new(
                "processing_id",
                "processing_id is required when kind is recorded",
            )),
            ("tick", None) => Ok(Doorbell::Tick),
            ("tick", Some(_)) => Err(ValidationError::new(
                "processing_id",
                "processing_id is not allowed when kind is tick",
            )),
            _ => Err(ValidationError::new(
                "kind",
                "kind must be one of recorded, tick",
            )),
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits, any case: the hyphenated form only
/// (not the simple, braced or URN forms `Uuid::parse_str` also reads).
fn is_hyphenated_uuid(raw: &str) -> bool {
    raw.parse::<uuid::fmt::Hyphenated>().is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(json: &str) -> Result<ConversationEnd, String> {
        serde_json::from_str::<ConversationEnd>(json).map_err(|e| e.to_string())
    }

    const EXAMPLE: &str = r#"{"user_id": "u-123", "conversation_id": "c-456",
        "metadata": {"total_turns": 12, "user_initiated_questions": 2,
                     "emotion": "happy", "new_memories_count": 1,
                     "topics": [{"name": "music", "turns": 8, "user_questions": 1}]}}"#;

    #[test]
    fn the_api_example_decodes() {
        let end = decode(EXAMPLE).unwrap();
        assert_eq!(end.user_id.as_str(), "u-123");
        assert_eq!(end.metadata.total_turns.get(), 12);
        assert_eq!(end.metadata.emotion, Emotion::Happy);
        assert_eq!(end.metadata.topics[0].name.as_str(), "music");
    }

    #[test]
    fn omitted_defaults_serialise_like_written_out_defaults() {
        let short = decode(
            r#"{"user_id":"u-1x","conversation_id":"c","metadata":
                {"total_turns":3,"user_initiated_questions":0,"emotion":"sad"}}"#,
        )
        .unwrap();
        let long = decode(
            r#"{"user_id":"u-1x","conversation_id":"c","metadata":
                {"total_turns":3,"user_initiated_questions":0,"emotion":"sad",
                 "new_memories_count":0,"topics":[]}}"#,
        )
        .unwrap();
        assert_eq!(short, long);
        assert_eq!(
            serde_json::to_value(&short.metadata).unwrap(),
            serde_json::json!({"total_turns":3,"user_initiated_questions":0,"emotion":"sad",
                               "new_memories_count":0,"topics":[]})
        );
    }

    #[test]
    fn bad_values_are_rejected_with_a_message_naming_the_field() {
        let cases = [
            (
                r#""user_id": "u-123""#,
                r#""user_id": "ab""#,
                "user_id must be between 3 and 128 characters",
            ),
            (
                r#""user_id": "u-123""#,
                r#""user_id": 12345"#,
                "user_id must be a string",
            ),
            (
                r#""conversation_id": "c-456""#,
                r#""conversation_id": """#,
                "conversation_id must be between 1 and 128 characters",
            ),
            (
                r#""total_turns": 12"#,
                r#""total_turns": -1"#,
                "metadata.total_turns must be an integer between 0 and 1000000",
            ),
            (
                r#""total_turns": 12"#,
                r#""total_turns": 12.5"#,
                "metadata.total_turns must be an integer",
            ),
            (
                r#""total_turns": 12"#,
                r#""total_turns": 1000001"#,
                "metadata.total_turns must be an integer",
            ),
            (
                r#""total_turns": 12"#,
                r#""total_turns": "12""#,
                "metadata.total_turns must be an integer",
            ),
            (
                r#""emotion": "happy""#,
                r#""emotion": "angry""#,
                "metadata.emotion must be one of interesting, boring, happy, sad, neutral",
            ),
            (
                r#""emotion": "happy""#,
                r#""emotion": null"#,
                "metadata.emotion must be one of",
            ),
            (
                r#""new_memories_count": 1"#,
                r#""new_memories_count": true"#,
                "metadata.new_memories_count must be an integer",
            ),
            (
                r#""turns": 8"#,
                r#""turns": -8"#,
                "metadata.topics[0].turns must be an integer",
            ),
            (
                r#""name": "music""#,
                r#""name": "  ""#,
                "metadata.topics[0].name must be between 1 and 64 characters",
            ),
            (
                r#""user_questions": 1"#,
                r#""user_questions": 1, "x": 1"#,
                "metadata.topics[0]: unknown field `x`",
            ),
            (
                r#""topics": ["#,
                r#""extra": 1, "topics": ["#,
                "unknown field `extra`",
            ),
        ];
        for (from, to, expected) in cases {
            let json = EXAMPLE.replacen(from, to, 1);
            assert_ne!(json, EXAMPLE, "{from}");
            let err = decode(&json).unwrap_err();
            assert!(err.contains(expected), "{to}: {err}");
        }
    }

    #[test]
    fn missing_required_fields_and_unknown_top_level_fields_are_rejected() {
        assert!(decode(r#"{"user_id":"u-123","conversation_id":"c"}"#)
            .unwrap_err()
            .contains("metadata"));
        let err = decode(&EXAMPLE.replacen("{", r#"{"extra":true,"#, 1)).unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = decode(
            r#"{"user_id":"u-123","conversation_id":"c","metadata":{"total_turns":1,"emotion":"sad"}}"#,
        )
        .unwrap_err();
        assert!(err.contains("user_initiated_questions"), "{err}");
        assert!(decode(r#"{"user_id":"u-123","conversation_id":"c","metadata":"x"}"#).is_err());
    }

    #[test]
    fn a_topic_named_twice_is_kept_twice() {
        let json = EXAMPLE.replacen(
            r#"[{"name": "music", "turns": 8, "user_questions": 1}]"#,
            r#"[{"name": "music", "turns": 8, "user_questions": 1},
                {"name": " music ", "turns": 1, "user_questions": 0}]"#,
            1,
        );
        let topics = decode(&json).unwrap().metadata.topics;
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["music", "music"]);
        assert_eq!((topics[0].turns.get(), topics[1].turns.get()), (8, 1));
    }

    #[test]
    fn more_than_fifty_topics_are_rejected() {
        let topics: Vec<String> = (0..51)
            .map(|i| format!(r#"{{"name":"t{i}","turns":1,"user_questions":0}}"#))
            .collect();
        let json = format!(
            r#"{{"user_id":"u-123","conversation_id":"c","metadata":{{"total_turns":1,
                "user_initiated_questions":0,"emotion":"sad","topics":[{}]}}}}"#,
            topics.join(",")
        );
        assert!(decode(&json)
            .unwrap_err()
            .contains("metadata.topics must have at most 50 entries"));
    }

    #[test]
    fn null_optional_fields_mean_omitted() {
        let end = decode(
            r#"{"user_id":"u-123","conversation_id":"c","metadata":{"total_turns":1,
                "user_initiated_questions":0,"emotion":"sad","new_memories_count":null,"topics":null}}"#,
        )
        .unwrap();
        assert_eq!(end.metadata.new_memories_count, Count::ZERO);
        assert!(end.metadata.topics.is_empty());
    }

    #[test]
    fn every_emotion_round_trips_through_its_string_and_json_forms() {
        for emotion in Emotion::ALL {
            assert_eq!(emotion.as_str().parse::<Emotion>().unwrap(), *emotion);
            let json = serde_json::to_string(emotion).unwrap();
            assert_eq!(serde_json::from_str::<Emotion>(&json).unwrap(), *emotion);
        }
        let strings: Vec<&str> = Emotion::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            strings,
            ["interesting", "boring", "happy", "sad", "neutral"]
        );
    }

    #[test]
    fn count_decodes_only_from_an_integer_in_range() {
        assert_eq!(
            serde_json::from_str::<Count>("1000000").unwrap().get(),
            1_000_000
        );
        for bad in ["1000001", "1000001.0", "-1", "1.5", "\"1\"", "null"] {
            assert!(serde_json::from_str::<Count>(bad).is_err(), "{bad}");
        }
        // JSON does not tell 12 from 12.0: both are the count 12.
        assert_eq!(serde_json::from_str::<Count>("12.0").unwrap().get(), 12);
        let end = decode(&EXAMPLE.replacen(r#""total_turns": 12"#, r#""total_turns": 12.0"#, 1));
        assert_eq!(end.unwrap(), decode(EXAMPLE).unwrap());
        assert!(Count::new(u64::MAX).is_err());
    }

    #[test]
    fn doorbells_have_the_agreed_json_forms() {
        let id = "0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a10";
        let recorded = Doorbell::Recorded {
            processing_id: id.into(),
        };
        assert_eq!(
            String::from_utf8(recorded.to_json()).unwrap(),
            format!(r#"{{"kind":"recorded","processing_id":"{id}"}}"#)
        );
        assert_eq!(Doorbell::Tick.to_json(), br#"{"kind":"tick"}"#);
        assert_eq!(Doorbell::from_json(&recorded.to_json()).unwrap(), recorded);
        assert_eq!(
            Doorbell::from_json(br#"{"kind":"tick"}"#).unwrap(),
            Doorbell::Tick
        );
    }

    #[test]
    fn bad_doorbells_are_refused() {
        for bad in [
            &br#"{"kind":"recorded"}"#[..],
            br#"{"kind":"recorded","processing_id":"not-a-uuid"}"#,
            br#"{"kind":"recorded","processing_id":"0b7c6a526f0e4c399d7b2f5d1f7e9a10"}"#,
            br#"{"kind":"recorded","processing_id":"{0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a10}"}"#,
            br#"{"kind":"recorded","processing_id":"urn:uuid:0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a10"}"#,
            br#"{"kind":"recorded","processing_id":"0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a1g"}"#,
            br#"{"kind":"recorded","processing_id":"0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a1\u0000"}"#,
            br#"{"kind":"tick","processing_id":"0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a10"}"#,
            br#"{"kind":"tick","extra":1}"#,
            br#"{"kind":"ring"}"#,
            br#"{"processing_id":"0b7c6a52-6f0e-4c39-9d7b-2f5d1f7e9a10"}"#,
            b"tick",
            b"",
        ] {
            assert!(
                Doorbell::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    pub(crate) fn arb_metadata() -> impl Strategy<Value = ConversationMetadata> {
        let count = || (0u64..=1_000_000).prop_map(|n| Count::new(n).unwrap());
        let topics = proptest::collection::btree_map("[a-z]{1,10}", (count(), count()), 0..5);
        (
            count(),
            count(),
            proptest::sample::select(Emotion::ALL),
            count(),
            topics,
        )
            .prop_map(
                |(total_turns, user_initiated_questions, emotion, new_memories_count, topics)| {
                    ConversationMetadata {
                        total_turns,
                        user_initiated_questions,
                        emotion,
                        new_memories_count,
                        topics: topics
                            .into_iter()
                            .map(|(name, (turns, user_questions))| TopicTurns {
                                name: TopicName::parse(&name).unwrap(),
                                turns,
                                user_questions,
                            })
                            .collect(),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn conversation_end_round_trips_through_json(
            metadata in arb_metadata(),
            user in "[a-zA-Z0-9é日-]{3,20}",
            conversation in "[a-z0-9-]{1,20}",
        ) {
            let end = ConversationEnd {
                user_id: UserId::parse(&user).unwrap(),
                conversation_id: ConversationId::parse(&conversation).unwrap(),
                metadata,
            };
            let json = serde_json::to_vec(&end).unwrap();
            prop_assert_eq!(serde_json::from_slice::<ConversationEnd>(&json).unwrap(), end);
        }

        #[test]
        fn recorded_doorbells_round_trip_in_either_case(bytes in any::<[u8; 16]>(), upper in any::<bool>()) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let id = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
            let id = if upper { id.to_uppercase() } else { id };
            let doorbell = Doorbell::Recorded { processing_id: id };
            prop_assert_eq!(Doorbell::from_json(&doorbell.to_json()).unwrap(), doorbell);
        }
    }
}
