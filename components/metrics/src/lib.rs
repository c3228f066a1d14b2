//! Prometheus metrics: `GET /metrics`, behind the `metrics_token` bearer
//! token (the error-schema 404 of unknown paths while it is unset; not
//! logged when it succeeds). A component of its own, so that the secret and
//! the scrape's reads stay out of every other route. The handler lives in
//! [`handlers`].

mod handlers;

use friendship_edge::{serve, Route};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

const ROUTES: &[Route] =
    &[Route::new(Method::Get, "/metrics", "metrics", handlers::scrape).unlogged()];

#[http_component]
fn handle(request: Request) -> Response {
    serve(request, ROUTES)
}
