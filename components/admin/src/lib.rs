//! Admin operations: listing events by status (the dead letters), redriving
//! all or chosen ones, the Redis messages the scorer rejected, and the
//! cache's hit and miss counts.
//! Handlers live in [`handlers`].

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[
    Route::new(
        Method::Post,
        "/api/v1/admin/events/redrive",
        "redrive_events",
        handlers::redrive_events,
    ),
    Route::new(
        Method::Get,
        "/api/v1/admin/events",
        "list_events",
        handlers::list_events,
    ),
    Route::new(
        Method::Get,
        "/api/v1/admin/rejected-messages",
        "list_rejected_messages",
        handlers::list_rejected_messages,
    ),
    Route::new(
        Method::Get,
        "/api/v1/admin/cache/stats",
        "cache_stats",
        handlers::cache_stats,
    ),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
