//! The end-to-end suite: the built `.wasm` components, run from `spin.toml`
//! by the project's wasmtime host as `spin up` would, against real Postgres
//! and Redis. One binary; every test works on its own users, so tests are
//! independent of each other and of their order.
//!
//! Modules: [`routes`] (each route's happy path), [`errors`] (every error
//! class), [`roles`] (the role matrix), [`scoring`] (asynchronous scoring,
//! idempotency, concurrency), [`levels`] (crossings, history, invalidation),
//! [`cache`] (hits, misses, staleness), [`faults`] (Redis, scorer and
//! Postgres failures on private servers), [`robustness`] (generated
//! malformed requests).

mod cache;
mod errors;
mod faults;
mod levels;
mod robustness;
mod roles;
mod routes;
mod scoring;
mod support;
