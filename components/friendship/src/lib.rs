//! Friendship: a user's status, and the service's atomic score updates.
//! Handlers live in [`handlers`].

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[
    Route::new(
        Method::Post,
        "/api/v1/friendship/status",
        "friendship_status",
        handlers::get_status,
    ),
    Route::new(
        Method::Post,
        "/api/v1/friendship/update",
        "friendship_update",
        handlers::update_friendship,
    ),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
