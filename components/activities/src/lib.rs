//! Activities: which agents should greet, talk and play with a user next.
//! Handlers live in [`handlers`]; the cache-or-Postgres flow is
//! `friendship_edge::suggestions`, the selection rules `friendship_domain`.

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[Route::new(
    Method::Post,
    "/api/v1/activities/suggest",
    "suggest_activities",
    handlers::suggest_activities,
)];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
