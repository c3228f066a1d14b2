//! Request bodies: strict JSON within a size limit (413, 415, and 400 naming
//! the field at fault).

use serde::de::DeserializeOwned;
use serde_json::Value;
use spin_sdk::http::Request;

use crate::error::ApiError;

/// Checks the size and content type of a body and decodes it.
pub fn parse_json_body<T: DeserializeOwned>(
    request: &Request,
    limit: usize,
) -> Result<T, ApiError> {
    let body = request.body();
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let content_type = request
        .header("content-type")
        .and_then(|h| h.as_str())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    decode_json(body)
}

/// Decodes JSON strictly, reporting syntax errors as `invalid_json` and wrong,
/// missing or unknown fields as `validation_error` with the field's path.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson {
            field: None,
            message: "the request body is empty".into(),
        });
    }
    // Syntax first, so that a truncated document is `invalid_json` even when
    // its first value is already of a wrong type.
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson {
        field: None,
        message: format!("malformed JSON: {}", strip_position(&e.to_string())),
    })?;
    // serde would also read a struct from an array of its fields in order;
    // a body is an object, its fields named.
    if !value.is_object() {
        return Err(ApiError::Validation {
            field: None,
            message: "the request body must be a JSON object".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = strip_position(&error.into_inner().to_string());
        let field = field_of(&path, &message);
        ApiError::Validation { field, message }
    })
}

/// serde_json appends " at line 1 column 17"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The dotted path of the field at fault; for a missing field the error sits
/// at the parent, so the field's own name is appended.
fn field_of(path: &str, message: &str) -> Option<String> {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (parent, named) {
        (parent, Some(name)) if parent == name || parent.ends_with(&format!(".{name}")) => {
            Some(parent.to_string())
        }
        ("", Some(name)) => Some(name.to_string()),
        (parent, Some(name)) => Some(format!("{parent}.{name}")),
        (parent, None) => match path_in_message(message) {
            // A value's own validation (the domain's `try_from`) fails after
            // serde has left the field, so its path is only in the message,
            // which the domain starts with the field's full path.
            Some(named) if named.starts_with(parent) => Some(named.to_string()),
            _ if parent.is_empty() => None,
            _ => Some(parent.to_string()),
        },
    }
}

/// The field path a domain validation message starts with
/// (`metadata.topics[2].turns must be …`).
fn path_in_message(message: &str) -> Option<&str> {
    let (first, rest) = message.split_once(' ')?;
    let is_path = first.starts_with(|c: char| c.is_ascii_lowercase())
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    (is_path && rest.starts_with("must")).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_reported_by_its_full_path() {
        assert_eq!(
            field_of("metadata", "missing field `emotion`"),
            Some("metadata.emotion".into())
        );
        assert_eq!(
            field_of(".", "missing field `user_id`"),
            Some("user_id".into())
        );
        assert_eq!(
            field_of("metadata.total_turns", "invalid type"),
            Some("metadata.total_turns".into())
        );
    }

    #[test]
    fn syntax_errors_and_wrong_fields_are_told_apart() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            n: u32,
        }
        assert!(matches!(
            decode_json::<Body>(b"{"),
            Err(ApiError::InvalidJson { .. })
        ));
        assert!(matches!(
            decode_json::<Body>(b""),
            Err(ApiError::InvalidJson { .. })
        ));
        match decode_json::<Body>(br#"{"n": "x"}"#) {
            Err(ApiError::Validation { field, .. }) => assert_eq!(field.as_deref(), Some("n")),
            other => panic!("{other:?}"),
        }
        match decode_json::<Body>(br#"{"n": 1, "m": 2}"#) {
            Err(ApiError::Validation { field, .. }) => assert_eq!(field.as_deref(), Some("m")),
            other => panic!("{other:?}"),
        }
    }
}
