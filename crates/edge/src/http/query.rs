//! Query strings: decoded into strict structs (unknown and repeated
//! parameters refused), and the page parameters every list shares.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ApiError;

/// Decodes a query string (`application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` a byte, invalid UTF-8 replaced) into `T`, strictly: a struct
/// with `deny_unknown_fields` refuses unknown parameters, and a repeated one
/// is refused too. Every failure is a 400 `validation_error` whose
/// `details.field` is the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    match serde_urlencoded::from_str::<Tracked<T>>(query) {
        Ok(Tracked(Ok(value))) => Ok(value),
        Ok(Tracked(Err((path, message)))) => Err(query_error(&path, message)),
        Err(error) => Err(query_error(".", error.to_string())),
    }
}

/// `T`, or the path and message of why it could not be decoded:
/// `serde_urlencoded` hides its deserializer behind `from_str`, so the path
/// is tracked from inside.
struct Tracked<T>(Result<T, (String, String)>);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Tracked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Tracked(
            serde_path_to_error::deserialize(deserializer)
                .map_err(|error| (error.path().to_string(), error.into_inner().to_string())),
        ))
    }
}

/// The 400 of a query string: the parameter named, by the message when it
/// is unknown or repeated, by the path otherwise; the message starts with
/// the parameter's name, as every 400's starts with its field.
fn query_error(path: &str, message: String) -> ApiError {
    let named = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let end = ["`, expected ", "`, there are no fields"]
            .iter()
            .find_map(|tail| rest.rfind(tail))
            .or_else(|| rest.rfind('`'))?;
        Some(rest[..end].to_owned())
    };
    if let Some(name) = named("unknown field `") {
        let message = format!("{name}: unknown query parameter `{name}`");
        return ApiError::validation(name, message);
    }
    if let Some(name) = named("duplicate field `") {
        let message = format!("{name} must not be repeated (query parameter `{name}`)");
        return ApiError::validation(name, message);
    }
    if matches!(path, "." | "?" | "") {
        return ApiError::Validation {
            field: None,
            message: format!("the query string is invalid: {message}"),
        };
    }
    // Domain values and page bounds say "<parameter> must …" themselves.
    let message = if message.starts_with(&format!("{path} ")) {
        message
    } else {
        format!("{path}: query parameter `{path}` is invalid: {message}")
    };
    ApiError::validation(path, message)
}

/// A page of a list: at most `limit` items after the first `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 100;
    pub const MAX_LIMIT: i64 = 500;

    /// The page of a route's decoded `limit` and `offset` parameters.
    pub fn of(limit: Limit, offset: Offset) -> Page {
        Page {
            limit: limit.get(),
            offset: offset.get(),
        }
    }
}

/// The query string of a route that accepts a page and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    #[serde(default)]
    pub(super) limit: Limit,
    #[serde(default)]
    pub(super) offset: Offset,
}

/// The `limit` query parameter: an integer from 1 to [`Page::MAX_LIMIT`],
/// [`Page::DEFAULT_LIMIT`] when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Limit(i64);

impl Limit {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(Page::DEFAULT_LIMIT)
    }
}

impl TryFrom<String> for Limit {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
            .ok()
            .filter(|limit| (1..=Page::MAX_LIMIT).contains(limit))
            .map(Limit)
            .ok_or_else(|| format!("limit must be an integer from 1 to {}", Page::MAX_LIMIT))
    }
}

/// The `offset` query parameter: a non-negative integer, 0 when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Offset(i64);

impl Offset {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<String> for Offset {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse()
            .ok()
            .filter(|offset| *offset >= 0)
            .map(Offset)
            .ok_or_else(|| "offset must be a non-negative integer".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Filters {
        name: Option<String>,
        flag: Option<bool>,
        #[serde(default)]
        limit: Limit,
        #[serde(default)]
        offset: Offset,
    }

    /// The field and message of a refused query string.
    fn refused<T: DeserializeOwned + std::fmt::Debug>(query: &str) -> (Option<String>, String) {
        match parse_query::<T>(query) {
            Err(ApiError::Validation { field, message }) => (field, message),
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let filters: Filters = parse_query("name=x%20y+z&flag=true&&limit=%32").unwrap();
        assert_eq!(filters.name.as_deref(), Some("x y z"));
        assert_eq!((filters.flag, filters.limit.get()), (Some(true), 2));
        let odd: Filters = parse_query("name=%zz%4").unwrap();
        assert_eq!(odd.name.as_deref(), Some("%zz%4"));
    }

    #[test]
    fn absent_parameters_take_their_defaults() {
        for query in ["", "&", "flag=false"] {
            let filters: Filters = parse_query(query).unwrap();
            assert_eq!((filters.limit.get(), filters.offset.get()), (100, 0));
            assert_eq!(filters.name, None);
        }
        let page: PageQuery = parse_query("limit=500&offset=100000000").unwrap();
        assert_eq!((page.limit.get(), page.offset.get()), (500, 100_000_000));
    }

    #[test]
    fn a_bad_query_string_names_the_parameter_at_fault() {
        for (query, field, message) in [
            ("limit=0", "limit", "limit must be an integer from 1 to 500"),
            (
                "limit=501",
                "limit",
                "limit must be an integer from 1 to 500",
            ),
            (
                "limit=abc",
                "limit",
                "limit must be an integer from 1 to 500",
            ),
            ("limit=", "limit", "limit must be an integer from 1 to 500"),
            ("limit", "limit", "limit must be an integer from 1 to 500"),
            (
                "offset=-1",
                "offset",
                "offset must be a non-negative integer",
            ),
            (
                "offset=1.5",
                "offset",
                "offset must be a non-negative integer",
            ),
            ("status=x", "status", "status: unknown query parameter `status`"),
            ("%zz=1", "%zz", "%zz: unknown query parameter `%zz`"),
            ("=1", "", ": unknown query parameter ``"),
            ("a`b=1", "a`b", "a`b: unknown query parameter `a`b`"),
            (
                "limit=1&limit=2",
                "limit",
                "limit must not be repeated (query parameter `limit`)",
            ),
            (
                "flag=maybe",
                "flag",
                "flag: query parameter `flag` is invalid: provided string was not `true` or `false`",
            ),
        ] {
            assert_eq!(
                refused::<Filters>(query),
                (Some(field.to_owned()), message.to_owned()),
                "{query}"
            );
        }
        assert_eq!(
            refused::<PageQuery>("name=x").0.as_deref(),
            Some("name"),
            "a page takes nothing else"
        );
    }
}
