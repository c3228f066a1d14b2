//! The request pipeline every HTTP component shares ([`serve`]): the request
//! id ([`request_id`]), the route table with 404 and 405 with `Allow`
//! ([`routing`]), strict JSON bodies ([`body`]), query strings and pages
//! ([`query`]), JSON answers, and one structured log line per request.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use spin_sdk::http::{Request, Response};

use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::log;

mod body;
mod query;
mod request_id;
mod routing;

pub use body::{decode_json, parse_json_body};
pub use query::{parse_query, Limit, Offset, Page};
pub use routing::Route;

use query::PageQuery;
use request_id::request_id_of;
use routing::{choose, Choice};

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

/// Serves one request with a component's route table, and logs it.
pub fn serve(request: Request, routes: &[Route]) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&request);
    let now = Utc::now();
    let path = request.path().to_string();
    let method = request.method().clone();

    let mut route_name = "unmatched";
    let mut logged = true;
    let mut user_id = None;
    let mut log_fields = serde_json::Map::new();
    let result = match choose(routes, &method, &path) {
        Choice::Route(route, params) => {
            route_name = route.name;
            logged = route.logged;
            let mut ctx = Ctx {
                request_id: request_id.clone(),
                request: &request,
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
        Choice::MethodNotAllowed { name, allow } => {
            route_name = name;
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
