//! The Spin adapter shared by every component of the friendship context
//! service. Components are thin: an entry macro and a route table; the rest
//! lives here, written once.
//!
//! - [`http`]: the request pipeline (request ids, routing with 404/405, strict
//!   JSON bodies, answers, the request log line);
//! - [`auth`]: HS256 bearer tokens and the role rules;
//! - [`error`]: the one error type and its mapping to HTTP;
//! - [`config`]: Spin variables;
//! - [`db`] and [`store`]: Postgres through `spin:postgres@4.0.0`;
//! - [`cache`]: candidates in Spin key-value;
//! - [`redis`]: outbound Redis (the scorer's doorbell, the cache counters);
//! - [`inbound`]: events published on Redis (channel and stream) by back-end producers;
//! - [`level_changes`]: level transitions relayed from their outbox to a Redis Stream;
//! - [`suggestions`] and [`scorer`]: the two use cases with more than one step;
//! - [`turn`]: one scorer wake-up at a time does the Postgres work, the others knock;
//! - [`metrics`]: the Prometheus exposition of `GET /metrics`, and its token check;
//! - [`probe`]: bounded TCP probes of Postgres and Redis, for `/health` and `/metrics`;
//! - [`log`]: structured JSON log lines.

pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod doorbell;
pub mod error;
pub mod http;
pub mod inbound;
pub mod level_changes;
pub mod log;
pub mod metrics;
pub mod probe;
pub mod redis;
pub mod scorer;
pub mod store;
pub mod suggestions;
pub mod turn;

pub use error::ApiError;
pub use http::{handle, respond, serve, Ctx, Reply, Route};
