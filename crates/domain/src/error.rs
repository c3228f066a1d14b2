//! The one error type of the domain: a rejected value, naming its field.
//!
//! Messages are whole sentences that start with the field path
//! (`metadata.topics[2].turns must be …`), so a client can act on them and an
//! adapter can show them as they are.

use serde_json::Value;

/// A value that breaks a domain rule. `field` is the dotted path of the
/// offending input (`user_id`, `metadata.total_turns`); `message` is the
/// human-readable sentence, also the `Display` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a JSON string, or says that `field` must be one.
pub(crate) fn json_str<'a>(value: &'a Value, field: &str) -> Result<&'a str, ValidationError> {
    value
        .as_str()
        .ok_or_else(|| ValidationError::new(field, format!("{field} must be a string")))
}

/// Reads a finite JSON number (integers included), or says that `field` must be one.
pub(crate) fn json_finite(value: &Value, field: &str) -> Result<f64, ValidationError> {
    value
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| ValidationError::new(field, format!("{field} must be a finite number")))
}

/// Reads a non-negative whole JSON number: an integer, or a number with no
/// fractional part (`8.0`), as JSON and JSON Schema do not tell `8` and `8.0`
/// apart. `None` for anything else, a whole number above 2^53 written as a
/// float included (it may not be the number the client wrote).
pub(crate) fn json_whole(value: &Value) -> Option<u64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= EXACT)
            .map(|n| n as u64)
    })
}

/// Reads a JSON boolean, or says that `field` must be one.
pub(crate) fn json_bool(value: &Value, field: &str) -> Result<bool, ValidationError> {
    value
        .as_bool()
        .ok_or_else(|| ValidationError::new(field, format!("{field} must be true or false")))
}

/// Generates a closed string enum whose only string mapping is `as_str`:
/// `FromStr`, `Display` and serde all go through it, so the wire, the
/// database and the code can never disagree.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident (field = $field:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the wire spelling, naming `field` in the error.
            pub fn parse_as(raw: &str, field: &str) -> Result<Self, $crate::error::ValidationError> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::error::ValidationError::new(
                        field,
                        format!(
                            "{field} must be one of {}",
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::ValidationError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse_as(raw, $field)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                raw.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_alone() {
        let error = ValidationError::new("user_id", "user_id must be between 3 and 128 characters");
        assert_eq!(
            error.to_string(),
            "user_id must be between 3 and 128 characters"
        );
        assert_eq!(error.field, "user_id");
    }

    #[test]
    fn json_readers_name_the_field_on_a_wrong_type() {
        let err = json_str(&Value::from(5), "user_id").unwrap_err();
        assert_eq!(err.message, "user_id must be a string");
        let err = json_bool(&Value::from("yes"), "context.is_birthday").unwrap_err();
        assert_eq!(err.field, "context.is_birthday");
        assert!(json_finite(&Value::from("1"), "x").is_err());
        assert_eq!(json_finite(&Value::from(3), "x"), Ok(3.0));
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction() {
        for (json, expected) in [
            ("0", Some(0)),
            ("8", Some(8)),
            ("8.0", Some(8)),
            ("26842.0", Some(26842)),
            ("1e3", Some(1000)),
            ("-0.0", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("9007199254740992.0", Some(9_007_199_254_740_992)),
            ("9007199254740994.0", None),
            ("8.5", None),
            ("-1", None),
            ("-1.0", None),
            ("\"8\"", None),
            ("null", None),
            ("true", None),
        ] {
            let value: Value = serde_json::from_str(json).unwrap();
            assert_eq!(json_whole(&value), expected, "{json}");
        }
    }
}
