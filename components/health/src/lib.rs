//! Health and the API description: `GET /health` (public; checks every
//! dependency), `GET /openapi.json`, and the error-schema 404 for every path
//! no other component serves (`GET /health/live` is the `live` component).
//! Handlers live in [`handlers`]; the bounded TCP probes that keep `/health`
//! within its time budget are `friendship_edge::probe`.

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[
    Route::new(Method::Get, "/health", "health", handlers::health),
    Route::new(Method::Get, "/openapi.json", "openapi", handlers::openapi),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
