//! One error type for every HTTP answer that is not a success, mapped to a
//! status in exactly one place ([`ApiError::status`]) and rendered in the
//! error schema of docs/http-contract.md (`Error` in openapi.json).
//!
//! 5xx bodies say nothing internal: the detail goes to the log line of the
//! request (with its request id), never to the client.

use serde_json::{json, Value};

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    #[error("{message}")]
    InvalidJson {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed on this path")]
    MethodNotAllowed {
        method: String,
        allow: Vec<&'static str>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// A bug or an unexpected answer from a dependency; the detail is logged only.
    #[error("internal error: {0}")]
    Internal(String),
    /// A dependency is down; the client may retry after `retry_after` seconds.
    #[error("{dependency} is unavailable: {detail}")]
    Unavailable {
        dependency: &'static str,
        detail: String,
        retry_after: u32,
    },
    /// A dependency did not answer in time.
    #[error("{dependency} timed out: {detail}")]
    Timeout {
        dependency: &'static str,
        detail: String,
    },
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation { .. } | ApiError::InvalidJson { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable { .. } => 503,
            ApiError::Timeout { .. } => 504,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation_error",
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::Timeout { .. } => "timeout",
        }
    }

    /// What the client reads: the whole story for 4xx, a fixed sentence for 5xx.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => {
                "an internal error occurred; it has been logged with this request id".into()
            }
            ApiError::Unavailable { dependency, .. } => {
                format!("the {dependency} is unavailable; retry later")
            }
            ApiError::Timeout { dependency, .. } => {
                format!("the {dependency} did not answer in time")
            }
            other => other.to_string(),
        }
    }

    /// The `details` object of the body, or null.
    pub fn details(&self) -> Value {
        match self {
            ApiError::Validation {
                field: Some(field), ..
            }
            | ApiError::InvalidJson {
                field: Some(field), ..
            } => json!({ "field": field }),
            ApiError::MethodNotAllowed { method, allow } => {
                json!({ "method": method, "allow": allow })
            }
            ApiError::PayloadTooLarge { limit } => json!({ "limit_bytes": limit }),
            _ => Value::Null,
        }
    }

    /// Headers the status requires: `Allow` on a 405, `Retry-After` on a 503.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed { allow, .. } => vec![("allow", allow.join(", "))],
            ApiError::Unavailable { retry_after, .. } => {
                vec![("retry-after", retry_after.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// The body of the error schema (`Error` in openapi.json).
    pub fn body(&self, request_id: &str, timestamp: &str) -> Value {
        json!({
            "error": self.code(),
            "message": self.public_message(),
            "details": self.details(),
            "timestamp": timestamp,
            "request_id": request_id,
        })
    }
}

/// A database failure, by its kind: the one mapping of Postgres failures to HTTP.
impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbErrorKind as K;
        let detail = e.to_string();
        match e.kind {
            K::Unavailable => ApiError::Unavailable {
                dependency: "database",
                detail,
                retry_after: 1,
            },
            K::Timeout => ApiError::Timeout {
                dependency: "database",
                detail,
            },
            // Only writes that expect no duplicate reach here with one; the
            // message names no constraint.
            K::UniqueViolation => ApiError::Conflict("this record already exists".into()),
            K::Failed => ApiError::Internal(detail),
        }
    }
}

impl From<crate::store::RecordError> for ApiError {
    fn from(e: crate::store::RecordError) -> Self {
        match e {
            crate::store::RecordError::Conflict => ApiError::Conflict(e.to_string()),
            // The contract's one reason for a 503 on this route: the event
            // could not be recorded, whatever the database said.
            crate::store::RecordError::Db(db) => match ApiError::from(db) {
                ApiError::Internal(detail) => ApiError::Unavailable {
                    dependency: "database",
                    detail: format!("the event could not be recorded: {detail}"),
                    retry_after: 1,
                },
                other => other,
            },
        }
    }
}

impl From<crate::store::MappingError> for ApiError {
    fn from(e: crate::store::MappingError) -> Self {
        match e {
            crate::store::MappingError::Duplicate => ApiError::Conflict(e.to_string()),
            crate::store::MappingError::Db(db) => db.into(),
        }
    }
}

impl From<friendship_domain::ValidationError> for ApiError {
    fn from(e: friendship_domain::ValidationError) -> Self {
        ApiError::Validation {
            field: Some(e.field),
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_body_never_carries_its_detail() {
        let error = ApiError::Internal("relation \"secret_table\" does not exist".into());
        let body = error.body("rid", "2026-11-22T10:00:00Z");
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("secret_table"));
    }

    #[test]
    fn a_method_not_allowed_lists_the_allowed_methods_in_its_header() {
        let error = ApiError::MethodNotAllowed {
            method: "PATCH".into(),
            allow: vec!["GET", "PUT"],
        };
        assert_eq!(error.status(), 405);
        assert_eq!(error.headers(), vec![("allow", "GET, PUT".to_string())]);
    }

    #[test]
    fn an_unavailable_dependency_asks_the_client_to_retry() {
        let error = ApiError::Unavailable {
            dependency: "database",
            detail: "refused".into(),
            retry_after: 2,
        };
        assert_eq!(error.status(), 503);
        assert_eq!(error.headers(), vec![("retry-after", "2".to_string())]);
        assert!(!error.public_message().contains("refused"));
    }
}
