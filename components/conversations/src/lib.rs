//! Conversations: recording conversation-end events durably (202 at once,
//! scored later by the scorer) and showing an event's state.
//! Handlers live in [`handlers`].

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[
    Route::new(
        Method::Post,
        "/api/v1/conversations/end",
        "end_conversation",
        handlers::end_conversation,
    ),
    Route::new(
        Method::Get,
        "/api/v1/conversations/:processing_id",
        "get_conversation",
        handlers::get_conversation,
    ),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
