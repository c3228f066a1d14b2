//! Agents of the catalogue: their type, weight, greeting trigger and topic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::{string_enum, ValidationError};
use crate::event::Emotion;
use crate::ids::TopicName;
use crate::text::{TextRule, Whitespace};

string_enum! {
    /// What an agent does in a conversation.
    pub enum AgentType (field = "agent_type") {
        /// Opens a conversation; one per suggestion.
        Greeting => "greeting",
        /// Carries a conversation on one topic; two per suggestion.
        Talk => "talk",
        /// Plays a game; two per suggestion.
        Game => "game",
    }
}

/// Upper bound of a weight (inclusive).
pub const MAX_WEIGHT: f64 = 1000.0;

/// A selection weight: finite, `0 < w <= 1000`. Relative: an agent of weight
/// 2 is picked twice as often as one of weight 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "Value")]
pub struct Weight(f64);

impl Weight {
    pub fn new(value: f64) -> Result<Self, ValidationError> {
        Self::new_as(value, "weight")
    }

    /// Like [`Weight::new`], naming `field` in the error.
    pub fn new_as(value: f64, field: &str) -> Result<Self, ValidationError> {
        if value.is_finite() && value > 0.0 && value <= MAX_WEIGHT {
            Ok(Self(value))
        } else {
            Err(Self::error(field))
        }
    }

    fn error(field: &str) -> ValidationError {
        ValidationError::new(
            field,
            format!("{field} must be a number greater than 0 and at most 1000"),
        )
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<Value> for Weight {
    type Error = ValidationError;
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        value
            .as_f64()
            .map_or_else(|| Err(Self::error("weight")), Weight::new)
    }
}

impl TryFrom<f64> for Weight {
    type Error = ValidationError;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Weight::new(value)
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

/// The situation a greeting agent is made for. String forms: `birthday`,
/// `returning`, `emotion:<emotion>`, `memory_recall`. A greeting agent
/// without a trigger is a general greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum GreetingTrigger {
    Birthday,
    Returning,
    Emotion(Emotion),
    MemoryRecall,
}

impl GreetingTrigger {
    /// Every trigger: the three plain ones and one per emotion.
    pub const ALL: [GreetingTrigger; 8] = [
        GreetingTrigger::Birthday,
        GreetingTrigger::Returning,
        GreetingTrigger::Emotion(Emotion::Interesting),
        GreetingTrigger::Emotion(Emotion::Boring),
        GreetingTrigger::Emotion(Emotion::Happy),
        GreetingTrigger::Emotion(Emotion::Sad),
        GreetingTrigger::Emotion(Emotion::Neutral),
        GreetingTrigger::MemoryRecall,
    ];

    /// The wire and database spelling.
    pub fn as_string(self) -> String {
        match self {
            GreetingTrigger::Birthday => "birthday".to_owned(),
            GreetingTrigger::Returning => "returning".to_owned(),
            GreetingTrigger::Emotion(emotion) => format!("emotion:{}", emotion.as_str()),
            GreetingTrigger::MemoryRecall => "memory_recall".to_owned(),
        }
    }

    /// Parses the wire spelling, naming `field` in the error.
    pub fn parse_as(raw: &str, field: &str) -> Result<Self, ValidationError> {
        let parsed = match raw {
            "birthday" => Some(GreetingTrigger::Birthday),
            "returning" => Some(GreetingTrigger::Returning),
            "memory_recall" => Some(GreetingTrigger::MemoryRecall),
            other => other
                .strip_prefix("emotion:")
                .and_then(|emotion| emotion.parse::<Emotion>().ok())
                .map(GreetingTrigger::Emotion),
        };
        parsed.ok_or_else(|| {
            ValidationError::new(
                field,
                format!(
                    "{field} must be one of birthday, returning, memory_recall or \
                     emotion:<interesting|boring|happy|sad|neutral>"
                ),
            )
        })
    }
}

impl FromStr for GreetingTrigger {
    type Err = ValidationError;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse_as(raw, "trigger")
    }
}

impl TryFrom<String> for GreetingTrigger {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl fmt::Display for GreetingTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

impl Serialize for GreetingTrigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_string())
    }
}

/// Longest agent id, in characters.
pub const MAX_AGENT_ID_CHARS: usize = 128;
/// Longest agent name, in characters.
pub const MAX_AGENT_NAME_CHARS: usize = 200;
/// Longest agent description, in characters.
pub const MAX_AGENT_DESCRIPTION_CHARS: usize = 2000;

const AGENT_ID: TextRule = TextRule {
    min: 1,
    max: MAX_AGENT_ID_CHARS,
    whitespace: Whitespace::Refused,
};
const AGENT_NAME: TextRule = TextRule {
    min: 1,
    max: MAX_AGENT_NAME_CHARS,
    whitespace: Whitespace::Refused,
};
const AGENT_DESCRIPTION: TextRule = TextRule {
    min: 0,
    max: MAX_AGENT_DESCRIPTION_CHARS,
    whitespace: Whitespace::Kept,
};
/// A talk agent's topic: a [`TopicName`] written in its trimmed form.
const AGENT_TOPIC: TextRule = TextRule {
    min: TopicName::MIN_CHARS,
    max: TopicName::MAX_CHARS,
    whitespace: Whitespace::Refused,
};

/// The fields of an agent that carry rules, borrowed: what an [`Agent`]
/// holds and what the mapping API accepts. [`AgentFields::validate`] is the
/// one statement of those rules (the database checks the same lengths):
/// `agent_id` 1..=128 chars and `name` 1..=200, both kept as given, so
/// without surrounding whitespace; `description` ≤ 2000; no U+0000 anywhere;
/// only a greeting may have a `trigger`; a talk agent has exactly one `topic`
/// (a valid [`TopicName`] in its trimmed form) and other agents none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFields<'a> {
    pub agent_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub agent_type: AgentType,
    pub trigger: Option<GreetingTrigger>,
    pub topic: Option<&'a str>,
}

impl AgentFields<'_> {
    /// Checks the rules above; errors name the mapping API's fields
    /// (`agent_id`, `agent_name`, `agent_description`, `trigger`, `topic`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        AGENT_ID.apply(self.agent_id, "agent_id")?;
        AGENT_NAME.apply(self.name, "agent_name")?;
        AGENT_DESCRIPTION.apply(self.description, "agent_description")?;
        if self.trigger.is_some() && self.agent_type != AgentType::Greeting {
            return Err(ValidationError::new(
                "trigger",
                "trigger is only allowed for greeting agents",
            ));
        }
        match (self.topic, self.agent_type) {
            (Some(topic), AgentType::Talk) => {
                AGENT_TOPIC.apply(topic, "topic")?;
            }
            (None, AgentType::Talk) => {
                return Err(ValidationError::new(
                    "topic",
                    "topic is required for talk agents",
                ));
            }
            (Some(_), _) => {
                return Err(ValidationError::new(
                    "topic",
                    "topic is only allowed for talk agents",
                ));
            }
            (None, _) => {}
        }
        Ok(())
    }
}

/// One active catalogue entry as selection sees it. Its fields obey
/// [`AgentFields::validate`], checked on deserialisation (a cached record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AgentWire")]
pub struct Agent {
    /// The mapping row's id.
    pub mapping_id: i64,
    pub agent_id: String,
    pub name: String,
    pub description: String,
    pub agent_type: AgentType,
    pub weight: Weight,
    pub trigger: Option<GreetingTrigger>,
    pub topic: Option<String>,
}

impl Agent {
    /// The fields its rules are about.
    pub fn fields(&self) -> AgentFields<'_> {
        AgentFields {
            agent_id: &self.agent_id,
            name: &self.name,
            description: &self.description,
            agent_type: self.agent_type,
            trigger: self.trigger,
            topic: self.topic.as_deref(),
        }
    }

    /// Checks [`AgentFields::validate`]'s rules.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.fields().validate()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Agent")]
struct AgentWire {
    mapping_id: i64,
    agent_id: String,
    name: String,
    description: String,
    agent_type: AgentType,
    weight: Weight,
    trigger: Option<GreetingTrigger>,
    topic: Option<String>,
}

impl TryFrom<AgentWire> for Agent {
    type Error = ValidationError;
    fn try_from(wire: AgentWire) -> Result<Self, Self::Error> {
        let agent = Agent {
            mapping_id: wire.mapping_id,
            agent_id: wire.agent_id,
            name: wire.name,
            description: wire.description,
            agent_type: wire.agent_type,
            weight: wire.weight,
            trigger: wire.trigger,
            topic: wire.topic,
        };
        agent.validate()?;
        Ok(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn talk(topic: &str) -> Agent {
        Agent {
            mapping_id: 7,
            agent_id: "talk-music".into(),
            name: "Music talk".into(),
            description: "Talks about music".into(),
            agent_type: AgentType::Talk,
            weight: Weight::new(2.5).unwrap(),
            trigger: None,
            topic: Some(topic.into()),
        }
    }

    #[test]
    fn every_agent_type_round_trips_through_its_string_and_json_forms() {
        for agent_type in AgentType::ALL {
            assert_eq!(
                agent_type.as_str().parse::<AgentType>().unwrap(),
                *agent_type
            );
            let json = serde_json::to_string(agent_type).unwrap();
            assert_eq!(
                serde_json::from_str::<AgentType>(&json).unwrap(),
                *agent_type
            );
        }
        let strings: Vec<&str> = AgentType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(strings, ["greeting", "talk", "game"]);
    }

    #[test]
    fn every_greeting_trigger_round_trips_through_its_string_and_json_forms() {
        for trigger in GreetingTrigger::ALL {
            assert_eq!(
                trigger.as_string().parse::<GreetingTrigger>().unwrap(),
                trigger
            );
            let json = serde_json::to_string(&trigger).unwrap();
            assert_eq!(json, format!("\"{trigger}\""));
            assert_eq!(
                serde_json::from_str::<GreetingTrigger>(&json).unwrap(),
                trigger
            );
        }
        let strings: Vec<String> = GreetingTrigger::ALL.iter().map(|t| t.as_string()).collect();
        assert_eq!(
            strings,
            [
                "birthday",
                "returning",
                "emotion:interesting",
                "emotion:boring",
                "emotion:happy",
                "emotion:sad",
                "emotion:neutral",
                "memory_recall"
            ]
        );
    }

    #[test]
    fn unknown_triggers_are_rejected() {
        for bad in ["emotion:angry", "emotion:", "Birthday", "memory-recall", ""] {
            let err = bad.parse::<GreetingTrigger>().unwrap_err();
            assert_eq!(err.field, "trigger", "{bad}");
        }
    }

    #[test]
    fn weight_must_be_positive_finite_and_at_most_1000() {
        assert!(Weight::new(0.001).is_ok());
        assert!(Weight::new(1000.0).is_ok());
        for bad in [0.0, -1.0, 1000.01, f64::NAN, f64::INFINITY] {
            assert!(Weight::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Weight::new(0.0).unwrap_err().message,
            "weight must be a number greater than 0 and at most 1000"
        );
        assert_eq!(serde_json::from_str::<Weight>("3").unwrap().get(), 3.0);
        assert!(serde_json::from_str::<Weight>("\"3\"").is_err());
        assert!(serde_json::from_str::<Weight>("0").is_err());
    }

    #[test]
    fn an_agent_round_trips_through_json() {
        let agent = talk("music");
        let json = serde_json::to_string(&agent).unwrap();
        assert_eq!(serde_json::from_str::<Agent>(&json).unwrap(), agent);
    }

    #[test]
    fn an_agent_with_an_unknown_field_is_rejected() {
        let mut value = serde_json::to_value(talk("music")).unwrap();
        value["extra"] = Value::from(1);
        let err = serde_json::from_value::<Agent>(value).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn a_talk_agent_needs_a_trimmed_topic_and_others_none() {
        assert!(talk("music").validate().is_ok());
        assert_eq!(talk(" music").validate().unwrap_err().field, "topic");
        let mut no_topic = talk("music");
        no_topic.topic = None;
        assert_eq!(
            no_topic.validate().unwrap_err().message,
            "topic is required for talk agents"
        );
        let mut game = talk("music");
        game.agent_type = AgentType::Game;
        assert!(game.validate().is_err());
        game.topic = None;
        assert!(game.validate().is_ok());
        game.trigger = Some(GreetingTrigger::Birthday);
        assert_eq!(game.validate().unwrap_err().field, "trigger");
    }

    #[test]
    fn every_violation_has_one_field_and_one_message() {
        let base = talk("music");
        let fields = base.fields();
        let long_id = "i".repeat(129);
        let long_name = "n".repeat(201);
        let long_description = "d".repeat(2001);
        let long_topic = "t".repeat(65);
        let cases = [
            (
                AgentFields {
                    agent_id: "",
                    ..fields
                },
                "agent_id",
                "agent_id must be between 1 and 128 characters",
            ),
            (
                AgentFields {
                    agent_id: &long_id,
                    ..fields
                },
                "agent_id",
                "agent_id must be between 1 and 128 characters",
            ),
            (
                AgentFields {
                    agent_id: " talk",
                    ..fields
                },
                "agent_id",
                "agent_id must not start or end with whitespace",
            ),
            (
                AgentFields { name: "", ..fields },
                "agent_name",
                "agent_name must be between 1 and 200 characters",
            ),
            (
                AgentFields {
                    name: &long_name,
                    ..fields
                },
                "agent_name",
                "agent_name must be between 1 and 200 characters",
            ),
            (
                AgentFields {
                    name: "Music\t",
                    ..fields
                },
                "agent_name",
                "agent_name must not start or end with whitespace",
            ),
            (
                AgentFields {
                    description: &long_description,
                    ..fields
                },
                "agent_description",
                "agent_description must be between 0 and 2000 characters",
            ),
            (
                AgentFields {
                    trigger: Some(GreetingTrigger::Birthday),
                    ..fields
                },
                "trigger",
                "trigger is only allowed for greeting agents",
            ),
            (
                AgentFields {
                    topic: None,
                    ..fields
                },
                "topic",
                "topic is required for talk agents",
            ),
            (
                AgentFields {
                    agent_type: AgentType::Game,
                    ..fields
                },
                "topic",
                "topic is only allowed for talk agents",
            ),
            (
                AgentFields {
                    topic: Some(""),
                    ..fields
                },
                "topic",
                "topic must be between 1 and 64 characters",
            ),
            (
                AgentFields {
                    topic: Some(&long_topic),
                    ..fields
                },
                "topic",
                "topic must be between 1 and 64 characters",
            ),
            (
                AgentFields {
                    topic: Some("   "),
                    ..fields
                },
                "topic",
                "topic must not start or end with whitespace",
            ),
        ];
        for (bad, field, message) in cases {
            let err = bad.validate().unwrap_err();
            assert_eq!((err.field.as_str(), err.message.as_str()), (field, message));
        }
        let edges = AgentFields {
            agent_id: &long_id[1..],
            name: "a b",
            description: "",
            ..fields
        };
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn a_cached_agent_with_a_padded_id_or_name_is_refused() {
        for (field, value) in [("agent_id", " talk-music"), ("name", "Music talk ")] {
            let mut json = serde_json::to_value(talk("music")).unwrap();
            json[field] = Value::from(value);
            let err = serde_json::from_value::<Agent>(json).unwrap_err();
            assert!(
                err.to_string()
                    .contains("must not start or end with whitespace"),
                "{err}"
            );
        }
    }

    proptest! {
        #[test]
        fn an_agent_round_trips_exactly_when_its_fields_are_valid(
            agent_id in "[ a-z\u{0}]{0,4}",
            name in "[ a-z\u{0}]{0,4}",
            topic in proptest::option::of("[ a-z\u{0}]{0,4}"),
            agent_type in proptest::sample::select(AgentType::ALL),
            trigger in proptest::option::of(proptest::sample::select(GreetingTrigger::ALL.to_vec())),
        ) {
            let agent = Agent {
                mapping_id: 1,
                agent_id,
                name,
                description: String::new(),
                agent_type,
                weight: Weight::new(1.0).unwrap(),
                trigger,
                topic,
            };
            let decoded = serde_json::from_value::<Agent>(serde_json::to_value(&agent).unwrap());
            prop_assert_eq!(decoded.is_ok(), agent.validate().is_ok());
            let unpadded_text = |s: &str| !s.is_empty() && s.trim() == s && !s.contains('\0');
            let valid = unpadded_text(&agent.agent_id)
                && unpadded_text(&agent.name)
                && (trigger.is_none() || agent_type == AgentType::Greeting)
                && match (&agent.topic, agent_type) {
                    (Some(topic), AgentType::Talk) => unpadded_text(topic),
                    (None, AgentType::Talk) | (Some(_), _) => false,
                    (None, _) => true,
                };
            prop_assert_eq!(agent.validate().is_ok(), valid);
        }
    }
}
