//! The request id every answer and log line carries.

use spin_sdk::http::Request;

/// The request id: the client's `x-request-id` when it is a sensible token,
/// a new UUID otherwise.
pub(super) fn request_id_of(request: &Request) -> String {
    request
        .header("x-request-id")
        .and_then(|h| h.as_str())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
