//! Friendship: a user's status, the service's atomic score updates, and the
//! user's own data (the score history, the export, the erasure).
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
    Route::new(
        Method::Post,
        "/api/v1/friendship/history",
        "friendship_history",
        handlers::get_history,
    ),
    Route::new(
        Method::Post,
        "/api/v1/friendship/export",
        "friendship_export",
        handlers::export,
    ),
    Route::new(
        Method::Post,
        "/api/v1/friendship/erase",
        "friendship_erase",
        handlers::erase,
    ),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
