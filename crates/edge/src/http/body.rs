//! Request bodies: read while they arrive, never past their limit (413),
//! then strict JSON (415, and 400 naming the field at fault, with a message
//! that starts with that field's path).

use serde::de::DeserializeOwned;
use serde_json::Value;
use spin_sdk::http::IncomingRequest;

use crate::error::ApiError;

/// Bytes asked of the host per read.
const READ_CHUNK: u64 = 16 * 1024;

/// A request's body: unread (the `wasi:http` request it belongs to), or
/// read once and kept.
pub(super) enum Body {
    Unread(Option<IncomingRequest>),
    Read(Result<Vec<u8>, BodyRead>),
}

impl Body {
    pub(super) fn unread(request: IncomingRequest) -> Body {
        Body::Unread(Some(request))
    }

    /// Reads the body the first time (at most `limit` + 1 bytes, nothing at
    /// all when `declared`, the `Content-Length`, is over `limit`); the same
    /// answer afterwards.
    pub(super) fn read(&mut self, declared: Option<&str>, limit: usize) -> Result<&[u8], ApiError> {
        if let Body::Unread(request) = self {
            let read = match request.take().and_then(|r| r.consume().ok()) {
                None => Ok(Vec::new()),
                Some(incoming) => {
                    let result = match incoming.stream() {
                        Ok(stream) => read_bounded(declared, limit, |max| {
                            match stream.blocking_read(max.min(READ_CHUNK)) {
                                Ok(chunk) => Ok(Some(chunk)),
                                Err(wasi::io::streams::StreamError::Closed) => Ok(None),
                                Err(e) => Err(format!("{e:?}")),
                            }
                        }),
                        Err(()) => Ok(Vec::new()),
                    };
                    // The stream, a child of the body, went with its arm.
                    drop(incoming);
                    result
                }
            };
            *self = Body::Read(read);
        }
        match self {
            Body::Read(Ok(bytes)) => Ok(bytes),
            Body::Read(Err(BodyRead::TooLarge)) => Err(ApiError::PayloadTooLarge { limit }),
            Body::Read(Err(BodyRead::Failed(detail))) => Err(ApiError::Validation {
                field: None,
                message: format!("the request body could not be read: {detail}"),
            }),
            Body::Unread(_) => unreachable!("read above"),
        }
    }
}

/// Why a body was not read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRead {
    /// Over the limit (declared, or read to the limit + 1).
    TooLarge,
    /// The client's stream failed (it went away mid-body).
    Failed(String),
}

/// Reads a body through `next`, which returns at most the number of bytes
/// it is asked for (`Ok(None)` at the end): refuses a `declared` length over
/// `limit` before reading anything, and stops as soon as more than `limit`
/// bytes have arrived, so no body costs more than `limit` + 1 bytes of
/// memory however long it is (or never ends).
pub fn read_bounded(
    declared: Option<&str>,
    limit: usize,
    mut next: impl FnMut(u64) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<u8>, BodyRead> {
    if let Some(declared) = declared.and_then(|d| d.trim().parse::<u64>().ok()) {
        if declared > limit as u64 {
            return Err(BodyRead::TooLarge);
        }
    }
    let mut body = Vec::new();
    loop {
        let room = (limit + 1 - body.len()) as u64;
        match next(room).map_err(BodyRead::Failed)? {
            None => return Ok(body),
            Some(chunk) => {
                let take = chunk.len().min(room as usize);
                body.extend_from_slice(&chunk[..take]);
                if body.len() > limit {
                    return Err(BodyRead::TooLarge);
                }
            }
        }
    }
}

/// `Content-Type` must name `application/json` (any case, parameters
/// allowed): 415 otherwise.
pub(super) fn check_media_type(content_type: &str) -> Result<(), ApiError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(())
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
        let message = match &field {
            Some(field) => starting_with(field, message),
            None => message,
        };
        ApiError::Validation { field, message }
    })
}

/// A message that starts with the path of the field it names: as it is
/// when it does, else `<field>: <message>` (serde's own messages, and a
/// value's message naming itself generically, as a map key's `topic must…`).
fn starting_with(field: &str, message: String) -> String {
    let starts = message
        .strip_prefix(field)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ':', '.', '[']));
    if starts {
        message
    } else {
        format!("{field}: {message}")
    }
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

    /// A body arriving in chunks of `chunk` bytes, `total` in all (or
    /// forever), counting what was asked of it.
    fn arriving(
        total: Option<usize>,
        chunk: usize,
    ) -> (
        impl FnMut(u64) -> Result<Option<Vec<u8>>, String>,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let given = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let counter = given.clone();
        let next = move |max: u64| {
            let left = total.map_or(usize::MAX, |t| t - counter.get());
            if left == 0 {
                return Ok(None);
            }
            let n = chunk.min(max as usize).min(left);
            counter.set(counter.get() + n);
            Ok(Some(vec![b'x'; n]))
        };
        (next, given)
    }

    #[test]
    fn a_body_is_read_whole_up_to_its_limit() {
        for total in [0, 1, 99, 100] {
            let (next, _) = arriving(Some(total), 7);
            assert_eq!(read_bounded(None, 100, next).unwrap().len(), total);
        }
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit_even_when_the_body_never_ends() {
        for total in [Some(101), Some(250 << 20), None] {
            let (next, given) = arriving(total, 64 * 1024);
            assert_eq!(read_bounded(None, 100, next), Err(BodyRead::TooLarge));
            assert_eq!(given.get(), 101, "{total:?}");
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (next, given) = arriving(None, 10);
        assert_eq!(
            read_bounded(Some("101"), 100, next),
            Err(BodyRead::TooLarge)
        );
        assert_eq!(given.get(), 0);
        // A declared length within the limit is no promise: the bytes count.
        let (next, given) = arriving(None, 10);
        assert_eq!(read_bounded(Some("5"), 100, next), Err(BodyRead::TooLarge));
        assert_eq!(given.get(), 101);
    }

    #[test]
    fn a_failing_stream_is_reported() {
        let next = |_| Err::<Option<Vec<u8>>, _>("connection reset".to_string());
        assert_eq!(
            read_bounded(None, 100, next),
            Err(BodyRead::Failed("connection reset".into()))
        );
    }

    #[test]
    fn every_message_starts_with_the_field_path_it_names() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            n: u32,
            topics: Option<std::collections::BTreeMap<friendship_domain::TopicName, u32>>,
        }
        for body in [
            &br#"{"n": "x"}"#[..],
            br#"{"n": 1, "m": 2}"#,
            br#"{"topics": {}}"#,
            br#"{"n": 1, "topics": {"   ": 1}}"#,
            br#"{"n": 1, "topics": {"music": "x"}}"#,
        ] {
            match decode_json::<Body>(body) {
                Err(ApiError::Validation {
                    field: Some(field),
                    message,
                }) => assert!(
                    message.starts_with(&field),
                    "{}: {field}: {message}",
                    String::from_utf8_lossy(body)
                ),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            starting_with(
                "metadata.total_turns",
                "metadata.total_turns must be".into()
            ),
            "metadata.total_turns must be"
        );
        assert_eq!(starting_with("n", "invalid type".into()), "n: invalid type");
        assert_eq!(starting_with("n", "name must".into()), "n: name must");
    }

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
