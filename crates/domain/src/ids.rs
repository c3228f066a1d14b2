//! Identifiers and names that arrive from clients: a user, a conversation, a
//! topic. Each is a string checked once at construction by its text rule
//! (length in Unicode scalar values, whitespace, no U+0000; see `text`).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::{json_str, ValidationError};
use crate::text::{TextRule, Whitespace};

macro_rules! bounded_string {
    (
        $(#[$meta:meta])*
        $name:ident (field = $field:literal, chars = $min:literal ..= $max:literal, whitespace = $ws:ident)
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Fewest characters allowed.
            pub const MIN_CHARS: usize = $min;
            /// Most characters allowed.
            pub const MAX_CHARS: usize = $max;

            const RULE: TextRule = TextRule {
                min: $min,
                max: $max,
                whitespace: Whitespace::$ws,
            };

            /// Validates `raw`, naming the default field in errors.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                Self::parse_as(raw, $field)
            }

            /// Validates `raw`, naming `field` (a path such as
            /// `metadata.topics[0].name`) in errors.
            pub fn parse_as(raw: &str, field: &str) -> Result<Self, ValidationError> {
                Ok(Self(Self::RULE.apply(raw, field)?.to_owned()))
            }

            pub(crate) fn from_json(value: &Value, field: &str) -> Result<Self, ValidationError> {
                Self::parse_as(json_str(value, field)?, field)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl From<&$name> for String {
            fn from(value: &$name) -> String {
                value.0.clone()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

bounded_string! {
    /// A user's id: 3 to 128 characters, kept exactly as given.
    UserId(field = "user_id", chars = 3..=128, whitespace = Kept)
}

bounded_string! {
    /// A conversation's id: 1 to 128 characters, kept exactly as given;
    /// unique across all users.
    ConversationId(field = "conversation_id", chars = 1..=128, whitespace = Kept)
}

bounded_string! {
    /// A topic name: surrounding whitespace is removed, then 1 to 64
    /// characters must remain. The trimmed form is the key of the user's
    /// topic metrics and of a talk agent's topic.
    TopicName(field = "topic", chars = 1..=64, whitespace = Trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_three_to_128_characters() {
        assert!(UserId::parse("abc").is_ok());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn user_id_rejects_two_or_129_characters_with_a_readable_message() {
        let err = UserId::parse("ab").unwrap_err();
        assert_eq!(err.field, "user_id");
        assert_eq!(err.message, "user_id must be between 3 and 128 characters");
        assert!(UserId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn user_id_counts_unicode_scalar_values_not_bytes() {
        assert!(UserId::parse("日本語").is_ok());
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert!(UserId::parse(&"é".repeat(129)).is_err());
    }

    #[test]
    fn conversation_id_must_not_be_empty() {
        assert_eq!(
            ConversationId::parse("").unwrap_err().message,
            "conversation_id must be between 1 and 128 characters"
        );
        assert!(ConversationId::parse("c").is_ok());
    }

    #[test]
    fn topic_name_is_trimmed_and_must_keep_a_character() {
        assert_eq!(TopicName::parse("  music ").unwrap().as_str(), "music");
        assert!(TopicName::parse("   ").is_err());
        assert!(TopicName::parse(&"t".repeat(65)).is_err());
    }

    #[test]
    fn parse_as_names_the_given_field() {
        let err = TopicName::parse_as("", "metadata.topics[3].name").unwrap_err();
        assert_eq!(err.field, "metadata.topics[3].name");
        assert!(err.message.starts_with("metadata.topics[3].name must be"));
    }

    #[test]
    fn ids_serialise_as_plain_strings_and_validate_when_decoded() {
        let id = UserId::parse("u-123").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"u-123\"");
        assert_eq!(serde_json::from_str::<UserId>("\"u-123\"").unwrap(), id);
        let err = serde_json::from_str::<UserId>("\"u\"").unwrap_err();
        assert!(err
            .to_string()
            .contains("user_id must be between 3 and 128 characters"));
    }
}
