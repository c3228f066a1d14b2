//! Agent mappings (admin): the agent catalogue's CRUD, with soft delete.
//! Every change bumps the catalogue version, so cached candidates computed
//! from the older catalogue stop being used. Handlers live in [`handlers`].

mod handlers;

use friendship_edge::Route;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

const ROUTES: &[Route] = &[
    Route::new(
        Method::Get,
        "/api/v1/agent-mappings",
        "list_mappings",
        handlers::list_mappings,
    ),
    Route::new(
        Method::Post,
        "/api/v1/agent-mappings",
        "create_mapping",
        handlers::create_mapping,
    ),
    Route::new(
        Method::Get,
        "/api/v1/agent-mappings/:id",
        "get_mapping",
        handlers::get_mapping,
    ),
    Route::new(
        Method::Put,
        "/api/v1/agent-mappings/:id",
        "replace_mapping",
        handlers::replace_mapping,
    ),
    Route::new(
        Method::Delete,
        "/api/v1/agent-mappings/:id",
        "deactivate_mapping",
        handlers::deactivate_mapping,
    ),
];

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    friendship_edge::handle(request, ROUTES, out)
}
