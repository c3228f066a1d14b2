//! Liveness: `GET /health/live` (public) answers `200 {"status":"alive"}`
//! when the process can run a component, and touches no dependency.
//!
//! It is a component of its own, apart from `health`, because orchestrators
//! call it every few seconds per instance and Spin instantiates a component
//! for every request: this one imports no Postgres, Redis, key-value or
//! socket interface and embeds no OpenAPI document, so each call costs close
//! to a hello-world component. It still answers through the shared pipeline
//! (`x-request-id`, the error schema, `405` with `Allow`), and is not logged
//! when it succeeds.

use friendship_edge::{respond, serve, ApiError, Ctx, Reply, Route};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] =
    &[Route::new(Method::Get, "/health/live", "liveness", liveness).unlogged()];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    respond(serve(request, ROUTES), out)
}

/// `GET /health/live`.
fn liveness(_ctx: &mut Ctx) -> Result<Reply, ApiError> {
    Reply::ok(&json!({ "status": "alive" }))
}
