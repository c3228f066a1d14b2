//! The one check of every client-supplied string: no U+0000 (a Postgres
//! `TEXT` cannot hold it), a length counted in Unicode scalar values (what
//! Postgres' `char_length` counts), and a rule for surrounding whitespace.

use crate::error::ValidationError;

/// What a string's surrounding whitespace means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whitespace {
    /// Part of the value, kept as given.
    Kept,
    /// Removed before the length is counted; the trimmed form is the value.
    Trimmed,
    /// Refused: the value is kept exactly as given, so padding is a typo.
    Refused,
}

/// The rules of one text field: `min..=max` characters and a whitespace rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextRule {
    pub min: usize,
    pub max: usize,
    pub whitespace: Whitespace,
}

impl TextRule {
    /// Checks `raw` as the value of `field` and returns the value to keep
    /// (trimmed under [`Whitespace::Trimmed`]).
    pub fn apply<'a>(&self, raw: &'a str, field: &str) -> Result<&'a str, ValidationError> {
        if raw.contains('\0') {
            return Err(ValidationError::new(
                field,
                format!("{field} must not contain the NUL character (U+0000)"),
            ));
        }
        let value = match self.whitespace {
            Whitespace::Trimmed => raw.trim(),
            Whitespace::Kept | Whitespace::Refused => raw,
        };
        if !(self.min..=self.max).contains(&value.chars().count()) {
            let suffix = match self.whitespace {
                Whitespace::Trimmed => ", not counting surrounding whitespace",
                Whitespace::Kept | Whitespace::Refused => "",
            };
            return Err(ValidationError::new(
                field,
                format!(
                    "{field} must be between {} and {} characters{suffix}",
                    self.min, self.max
                ),
            ));
        }
        if self.whitespace == Whitespace::Refused && value.trim() != value {
            return Err(ValidationError::new(
                field,
                format!("{field} must not start or end with whitespace"),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentFields, AgentType};
    use crate::event::ConversationEnd;
    use crate::ids::{ConversationId, TopicName, UserId};
    use proptest::prelude::*;

    const KEPT: TextRule = TextRule {
        min: 1,
        max: 5,
        whitespace: Whitespace::Kept,
    };

    #[test]
    fn the_whitespace_rules_keep_trim_or_refuse() {
        assert_eq!(KEPT.apply(" ab ", "f"), Ok(" ab "));
        let trimmed = TextRule {
            whitespace: Whitespace::Trimmed,
            ..KEPT
        };
        assert_eq!(trimmed.apply("  ab ", "f"), Ok("ab"));
        assert_eq!(
            trimmed.apply("   ", "f").unwrap_err().message,
            "f must be between 1 and 5 characters, not counting surrounding whitespace"
        );
        let refused = TextRule {
            whitespace: Whitespace::Refused,
            ..KEPT
        };
        assert_eq!(refused.apply("a b", "f"), Ok("a b"));
        assert_eq!(
            refused.apply(" ab", "f").unwrap_err().message,
            "f must not start or end with whitespace"
        );
        assert_eq!(
            refused.apply("abcdef", "f").unwrap_err().message,
            "f must be between 1 and 5 characters"
        );
    }

    /// Every text field of the domain's inputs, each with a valid value and
    /// the check it goes through.
    type Check = fn(&str) -> Result<(), String>;

    fn agent(fields: AgentFields<'_>) -> Result<(), String> {
        fields.validate().map_err(|e| e.message)
    }

    const TALK: AgentFields<'static> = AgentFields {
        agent_id: "talk-1",
        name: "Talk",
        description: "",
        agent_type: AgentType::Talk,
        trigger: None,
        topic: Some("music"),
    };

    fn text_fields() -> Vec<(&'static str, &'static str, Check)> {
        vec![
            ("user_id", "u-123", |s| {
                UserId::parse(s).map(drop).map_err(|e| e.message)
            }),
            ("conversation_id", "c-1", |s| {
                ConversationId::parse(s).map(drop).map_err(|e| e.message)
            }),
            ("topic", "music", |s| {
                TopicName::parse(s).map(drop).map_err(|e| e.message)
            }),
            ("metadata.topics[0].name", "music", |s| {
                let json = serde_json::json!({
                    "user_id": "u-123", "conversation_id": "c-1",
                    "metadata": {"total_turns": 1, "user_initiated_questions": 0, "emotion": "happy",
                                 "topics": [{"name": s, "turns": 1, "user_questions": 0}]}
                });
                serde_json::from_value::<ConversationEnd>(json)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
            ("agent_id", "talk-1", |s| {
                agent(AgentFields {
                    agent_id: s,
                    ..TALK
                })
            }),
            ("agent_name", "Talk", |s| {
                agent(AgentFields { name: s, ..TALK })
            }),
            ("agent_description", "About", |s| {
                agent(AgentFields {
                    description: s,
                    ..TALK
                })
            }),
            ("topic", "music", |s| {
                agent(AgentFields {
                    topic: Some(s),
                    ..TALK
                })
            }),
        ]
    }

    #[test]
    fn every_text_field_accepts_its_example() {
        for (field, valid, check) in text_fields() {
            assert_eq!(check(valid), Ok(()), "{field}");
        }
    }

    proptest! {
        #[test]
        fn a_nul_anywhere_in_any_text_field_is_refused_naming_the_field(
            field in 0usize..8,
            position in any::<prop::sample::Index>(),
        ) {
            let (name, valid, check) = text_fields()[field];
            let at = position.index(valid.len() + 1);
            let mut value = valid.to_owned();
            value.insert(at, '\0');
            let message = check(&value).unwrap_err();
            prop_assert!(
                message.contains(&format!("{name} must not contain the NUL character (U+0000)")),
                "{name}: {message}"
            );
        }

        #[test]
        fn any_string_with_a_nul_breaks_every_rule(
            before in any::<String>(),
            after in any::<String>(),
            min in 0usize..4,
            whitespace in prop::sample::select(vec![Whitespace::Kept, Whitespace::Trimmed, Whitespace::Refused]),
        ) {
            let rule = TextRule { min, max: usize::MAX, whitespace };
            let err = rule.apply(&format!("{before}\0{after}"), "f").unwrap_err();
            prop_assert_eq!(err.field, "f");
            prop_assert_eq!(err.message, "f must not contain the NUL character (U+0000)");
        }

        #[test]
        fn a_string_without_nul_is_judged_by_length_and_whitespace_alone(
            raw in any::<String>().prop_filter("no NUL", |s| !s.contains('\0')),
        ) {
            let rule = TextRule { min: 0, max: usize::MAX, whitespace: Whitespace::Kept };
            prop_assert_eq!(rule.apply(&raw, "f"), Ok(raw.as_str()));
        }
    }
}
