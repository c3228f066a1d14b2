//! The request pipeline every HTTP component shares ([`serve`]): the request
//! id ([`request_id`]), the trace id of a W3C `traceparent` ([`trace`]), the route table with 404 and 405 with `Allow`
//! ([`routing`]), strict JSON bodies ([`body`]), query strings and pages
//! ([`query`]), JSON answers sent whole ([`respond`]), and one structured
//! log line per request.
//!
//! A component hands [`serve`] the `wasi:http` request itself, not the
//! SDK's `Request` (whose conversion reads the whole body into memory before
//! any check): the body stays unread until a handler asks for it, after
//! routing and authentication, and is then read at most up to its limit
//! plus one byte ([`Ctx::body`]). A request refused before that costs no
//! body at all, and none costs more than its limit. Headers a request must
//! not repeat (`Authorization`, `Content-Type`) are refused when repeated,
//! where they are read ([`Ctx::single_header`]).

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use spin_sdk::http::{IncomingRequest, Request, Response, ResponseOutparam};

use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::log;

mod body;
mod query;
mod request_id;
mod respond;
mod routing;
pub mod trace;

pub use body::{decode_json, read_bounded, BodyRead};
pub use query::{parse_query, Limit, Offset, Page};
pub use respond::respond;
pub use routing::Route;

use query::PageQuery;
use request_id::request_id_of;
use routing::{choose, method_name, Choice};

use crate::redis::requests::{self, Served};

/// Bodies above this many bytes are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A handler of one (method, path pattern).
pub type Handler = fn(&mut Ctx) -> Result<Reply, ApiError>;

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
    /// The W3C trace id: the request's valid `traceparent`'s, else a new
    /// one ([`trace`]). Logged beside the request id, and stored with an
    /// event, whose scorer log lines then carry it.
    pub trace_id: String,
    /// The request's method, URI and headers (the last of a repeated
    /// header). Its body is always empty: read the body with [`Ctx::body`]
    /// or [`Ctx::json_body`].
    pub request: &'a Request,
    /// Every header as received, repeats included (names in lower case).
    headers: &'a [(String, Vec<u8>)],
    body: body::Body,
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
        Ok(Page::of(query.limit, query.offset))
    }

    /// The value of a header the request may carry at most once (`None`
    /// when absent, or not UTF-8); `Err(n)` when it carries it `n > 1`
    /// times. A proxy that reads the first of repeated headers and a
    /// component that reads the last must never disagree about who calls.
    pub fn single_header(&self, name: &str) -> Result<Option<&str>, usize> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        match (values.next(), values.count()) {
            (None, _) => Ok(None),
            (Some(value), 0) => Ok(std::str::from_utf8(value).ok()),
            (Some(_), more) => Err(more + 1),
        }
    }

    /// The `Authorization` header; a 401 when the request repeats it.
    pub fn authorization(&self) -> Result<Option<&str>, ApiError> {
        self.single_header("authorization").map_err(|n| {
            ApiError::Unauthorized(format!(
                "authorization must be sent once; this request has {n} Authorization headers"
            ))
        })
    }

    /// Authenticates the bearer token (401 when it is missing or invalid,
    /// or sent more than once).
    pub fn authenticate(&mut self) -> Result<Principal, ApiError> {
        auth::authenticate(self.authorization()?)
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

    /// The body, read now (once) and never past [`MAX_BODY_BYTES`] + 1
    /// bytes: a 413 when it is larger, or when its `Content-Length` says so
    /// (then nothing is read).
    pub fn body(&mut self) -> Result<&[u8], ApiError> {
        let declared = self.single_header("content-length").ok().flatten();
        let declared = declared.map(str::to_owned);
        self.body.read(declared.as_deref(), MAX_BODY_BYTES)
    }

    /// Reads the body as strict JSON into `T`: 413 over the limit (read no
    /// further than [`Ctx::body`] reads), 400 for a repeated
    /// `Content-Type`, 415 when it is not JSON, 400 naming the field at
    /// fault otherwise.
    pub fn json_body<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        self.body()?;
        let content_type = self.single_header("content-type").map_err(|n| {
            ApiError::validation(
                "content-type",
                format!(
                    "content-type must be sent once; this request has {n} Content-Type headers"
                ),
            )
        })?;
        body::check_media_type(content_type.unwrap_or(""))?;
        decode_json(self.body()?)
    }
}

/// A component's whole request: [`serve`], the answer sent ([`respond`]),
/// then the request counted (`redis::requests`, sampled; when the component
/// counts requests) once the answer is Spin's, so that counting never
/// delays it.
pub fn handle(incoming: IncomingRequest, routes: &[Route], out: ResponseOutparam) {
    let started = Instant::now();
    let (response, mut served) = serve_and_describe(incoming, routes, started);
    respond(response, out);
    served.latency = started.elapsed();
    requests::record(&served);
}

/// Serves one request with a component's route table, and logs it. The
/// body is read only if, and once, a handler asks for it ([`Ctx::body`]).
pub fn serve(incoming: IncomingRequest, routes: &[Route]) -> Response {
    serve_and_describe(incoming, routes, Instant::now()).0
}

/// [`serve`], with what the request counters need of the request (its
/// latency so far).
fn serve_and_describe(
    incoming: IncomingRequest,
    routes: &[Route],
    started: Instant,
) -> (Response, Served) {
    let headers = incoming.headers().entries();
    let request = Request::builder()
        .method(incoming.method())
        .uri(incoming.uri())
        .headers(headers.clone())
        .build();
    let body = body::Body::unread(incoming);
    let request_id = request_id_of(&request);
    let trace_id = trace::trace_id_of(&headers);
    let now = Utc::now();
    let path = request.path().to_string();
    let method = request.method().clone();

    let mut route_name = "unmatched";
    let mut template = "unmatched";
    let mut method_label = method_name(&method);
    let mut logged = true;
    let mut user_id = None;
    let mut log_fields = serde_json::Map::new();
    let result = match choose(routes, &method, &path) {
        Choice::Route(route, params) => {
            route_name = route.name;
            template = route.pattern;
            if !route.any_method {
                method_label = method_name(&route.method);
            }
            logged = route.logged;
            let mut ctx = Ctx {
                request_id: request_id.clone(),
                trace_id: trace_id.clone(),
                request: &request,
                headers: &headers,
                body,
                now,
                params,
                user_id: None,
                log_fields: serde_json::Map::new(),
            };
            let result = (route.handler)(&mut ctx);
            user_id = ctx.user_id;
            log_fields = ctx.log_fields;
            result
        }
        Choice::NotFound => Err(ApiError::NotFound(format!("no route for {path}"))),
        Choice::MethodNotAllowed {
            name,
            pattern,
            allow,
        } => {
            route_name = name;
            template = pattern;
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

    let served = Served {
        route: template,
        method: method_label,
        status,
        latency: started.elapsed(),
    };
    if !logged && status < 400 {
        return (response, served);
    }
    log::request(
        &request_id,
        &trace_id,
        &method.to_string(),
        route_name,
        &path,
        status,
        started.elapsed(),
        user_id.as_deref(),
        log_fields,
    );
    (response, served)
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
