//! End-to-end testing support for the friendship service.
//!
//! [`host`] runs the app's Spin components in-process on wasmtime, backed by
//! real Postgres and Redis, standing in for `spin up` where the Spin CLI
//! cannot be installed. The end-to-end suite lives in `tests/e2e/`.

pub mod host;
