//! The benchmark baseline (`scripts/bench.sh`): the smallest Spin HTTP
//! component, built with the same spin-sdk and release profile as the
//! service's components. Every request gets `200` and `{"status":"alive"}`;
//! it reads nothing, calls no host interface and logs nothing.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_request: Request) -> impl IntoResponse {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(r#"{"status":"alive"}"#)
        .build()
}
