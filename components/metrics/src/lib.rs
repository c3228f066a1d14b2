//! Prometheus metrics: `GET /metrics`, behind the `metrics_token` bearer
//! token (the error-schema 404 of unknown paths while it is unset; not
//! logged when it succeeds). A component of its own, so that the secret and
//! the scrape's reads stay out of every other route. The handler lives in
//! [`handlers`].

mod handlers;

use friendship_edge::{respond, serve, Route};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

// Every method reaches the handler, so that while `metrics_token` is empty
// the route is a 404 whatever the method (a 405 would tell it exists).
const ROUTES: &[Route] = &[
    Route::new(Method::Get, "/metrics", "metrics", handlers::scrape)
        .unlogged()
        .any_method(),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    respond(serve(request, ROUTES), out)
}
