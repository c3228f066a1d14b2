//! The request pipeline every HTTP component shares: request ids, the route
//! table (404 and 405 with `Allow`), strict JSON bodies (413, 415, 400 with the
//! field at fault), JSON answers, and one structured log line per request.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spin_sdk::http::{Method, Request, Response};

use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::log;

/// Bodies above this many bytes are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A handler of one (method, path pattern).
pub type Handler = fn(&mut Ctx) -> Result<Reply, ApiError>;

/// One line of a component's route table. Patterns are literal segments and
/// `:name` parameters, e.g. `/api/v1/agent-mappings/:id`.
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub name: &'static str,
    pub handler: Handler,
    /// Its successful answers get a log line. Off for the liveness probe,
    /// which an orchestrator calls every few seconds: its lines would drown
    /// the log and cost every probe a write (failures are still logged).
    pub logged: bool,
}

impl Route {
    pub const fn new(
        method: Method,
        pattern: &'static str,
        name: &'static str,
        handler: Handler,
    ) -> Self {
        Route {
            method,
            pattern,
            name,
            handler,
            logged: true,
        }
    }

    /// The same route, whose successful answers are not logged.
    pub const fn unlogged(mut self) -> Self {
        self.logged = false;
        self
    }
}

/// A successful answer: a status and a JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: &impl Serialize) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ApiError::Internal(format!("serialising a reply: {e}")))?;
        Ok(Reply {
            status,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        })
    }

    pub fn ok(body: &impl Serialize) -> Result<Reply, ApiError> {
        Reply::json(200, body)
    }
}

/// What a handler knows about the request it serves.
pub struct Ctx<'a> {
    pub request_id: String,
    pub request: &'a Request,
    pub now: DateTime<Utc>,
    params: Vec<(&'static str, String)>,
    /// The user the request is about, for the log line.
    pub user_id: Option<String>,
    /// Extra fields for the log line.
    pub log_fields: serde_json::Map<String, Value>,
}

impl Ctx<'_> {
    /// A path parameter of the matched pattern.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The query string decoded into `T`, the struct of the parameters the
    /// route accepts (see [`parse_query`]).
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_query(self.request.query())
    }

    /// A page of a list (`limit`, `offset`) from a query string that may
    /// hold nothing else.
    pub fn page(&self) -> Result<Page, ApiError> {
        let query: PageQuery = self.query()?;
        Ok(Page {
            limit: query.limit.get(),
            offset: query.offset.get(),
        })
    }

    /// Authenticates the bearer token (401 when it is missing or invalid).
    pub fn authenticate(&mut self) -> Result<Principal, ApiError> {
        let header = self
            .request
            .header("authorization")
            .and_then(|h| h.as_str());
        auth::authenticate(header)
    }

    /// Authenticates and refuses (403) a role that may not use this route at all.
    pub fn authenticate_as(&mut self, allowed: &[Role]) -> Result<Principal, ApiError> {
        let principal = self.authenticate()?;
        if !allowed.contains(&principal.role) {
            return Err(ApiError::Forbidden(format!(
                "the {} role may not use this route",
                principal.role.as_str()
            )));
        }
        Ok(principal)
    }

    /// Reads the body as strict JSON into `T`: 413 over the limit, 415 when it
    /// is not JSON, 400 naming the field at fault otherwise.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json_body(self.request, MAX_BODY_BYTES)
    }
}

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
/// is unknown or repeated, by the path otherwise.
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
        let message = format!("unknown query parameter `{name}`");
        return ApiError::validation(name, message);
    }
    if let Some(name) = named("duplicate field `") {
        let message = format!("query parameter `{name}` must not be repeated");
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
        format!("query parameter `{path}` is invalid: {message}")
    };
    ApiError::validation(path, message)
}

/// Percent-decodes a path segment (RFC 3986): `%XX` is a byte, anything else,
/// `+` included, is itself (`+` is a space only in a query string); a `%` not
/// followed by two hex digits stays, and invalid UTF-8 is replaced.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request id: the client's `x-request-id` when it is a sensible token,
/// a new UUID otherwise.
fn request_id_of(request: &Request) -> String {
    request
        .header("x-request-id")
        .and_then(|h| h.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Matches a path against a pattern, returning its parameters.
fn match_pattern(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.trim_end_matches('/').split('/');
    let mut path_segments = path.trim_end_matches('/').split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with(':') => {
                if s.is_empty() {
                    return None;
                }
                params.push((&p[1..], percent_decode(s)));
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Serves one request with a component's route table, and logs it.
pub fn serve(request: Request, routes: &[Route]) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&request);
    let now = Utc::now();
    let path = request.path().to_string();
    let method = request.method().clone();

    let mut matching: Vec<(&Route, Vec<(&'static str, String)>)> = routes
        .iter()
        .filter_map(|r| match_pattern(r.pattern, &path).map(|p| (r, p)))
        .collect();
    // A literal path wins over a parameter: `GET /conversations/end` is a
    // wrong method on a known path, not an event named "end".
    if matching.iter().any(|(_, params)| params.is_empty()) {
        matching.retain(|(_, params)| params.is_empty());
    }
    let chosen = matching.iter().find(|(r, _)| r.method == method);

    let mut route_name = "unmatched";
    let mut logged = true;
    let mut user_id = None;
    let mut log_fields = serde_json::Map::new();
    let result = match chosen {
        Some((route, params)) => {
            route_name = route.name;
            logged = route.logged;
            let mut ctx = Ctx {
                request_id: request_id.clone(),
                request: &request,
                now,
                params: params.clone(),
                user_id: None,
                log_fields: serde_json::Map::new(),
            };
            let result = (route.handler)(&mut ctx);
            user_id = ctx.user_id;
            log_fields = ctx.log_fields;
            result
        }
        None if matching.is_empty() => Err(ApiError::NotFound(format!("no route for {path}"))),
        None => {
            route_name = matching[0].0.name;
            let mut allow: Vec<&'static str> = matching
                .iter()
                .map(|(r, _)| method_name(&r.method))
                .collect();
            allow.dedup();
            Err(ApiError::MethodNotAllowed {
                method: method.to_string(),
                allow,
            })
        }
    };

    let timestamp = rfc3339(now);
    let (status, response) = match result {
        Ok(reply) => {
            let mut builder = Response::builder();
            builder
                .status(reply.status)
                .header("content-type", reply.content_type)
                .header("x-request-id", request_id.as_str());
            for (name, value) in reply.headers {
                builder.header(name, value);
            }
            (reply.status, builder.body(reply.body).build())
        }
        Err(error) => {
            if error.status() >= 500 {
                log_fields.insert("error".into(), Value::String(error.to_string()));
            }
            let mut builder = Response::builder();
            builder
                .status(error.status())
                .header("content-type", "application/json")
                .header("x-request-id", request_id.as_str());
            for (name, value) in error.headers() {
                builder.header(name, value);
            }
            let body = error.body(&request_id, &timestamp).to_string();
            (error.status(), builder.body(body).build())
        }
    };

    if !logged && status < 400 {
        return response;
    }
    log::request(
        &request_id,
        &method.to_string(),
        route_name,
        &path,
        status,
        started.elapsed(),
        user_id.as_deref(),
        log_fields,
    );
    response
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
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
}

/// The query string of a route that accepts a page and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    limit: Limit,
    #[serde(default)]
    offset: Offset,
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

/// Formats a UTC instant the way every answer does (RFC 3339, `Z`).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serializes a time as [`rfc3339`] does (for `serialize_with`).
pub fn serialize_rfc3339<S: serde::Serializer>(
    at: &DateTime<Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

/// As [`serialize_rfc3339`], for an optional time (null when absent).
pub fn serialize_rfc3339_option<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&rfc3339(*at)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_captures_its_parameters() {
        let params =
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/42").unwrap();
        assert_eq!(params, vec![("id", "42".to_string())]);
        assert!(match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings").is_none());
        assert!(
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/1/x").is_none()
        );
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
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("x%20y"), "x y");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9%2b"), "é+");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn a_plus_in_a_path_is_a_plus_not_a_space() {
        assert_eq!(percent_decode("+007"), "+007");
        assert_eq!(percent_decode("a+b%2B"), "a+b+");
        let params =
            match_pattern("/api/v1/agent-mappings/:id", "/api/v1/agent-mappings/+7").unwrap();
        assert_eq!(params, vec![("id", "+7".to_string())]);
    }

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
            ("status=x", "status", "unknown query parameter `status`"),
            ("%zz=1", "%zz", "unknown query parameter `%zz`"),
            ("=1", "", "unknown query parameter ``"),
            ("a`b=1", "a`b", "unknown query parameter `a`b`"),
            (
                "limit=1&limit=2",
                "limit",
                "query parameter `limit` must not be repeated",
            ),
            (
                "flag=maybe",
                "flag",
                "query parameter `flag` is invalid: provided string was not `true` or `false`",
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
