//! The end-to-end suite: the built `.wasm` components, run from `spin.toml`
//! by the project's wasmtime host as `spin up` would, against real Postgres
//! and Redis. One binary; every test works on its own users, so tests are
//! independent of each other and of their order.
//!
//! Modules: [`routes`] (each route's happy path), [`bounds`] (the topics a
//! user keeps and the daily score cap, under floods and concurrency), [`errors`] (every error
//! class), [`roles`] (the role matrix), [`scoring`] (asynchronous scoring,
//! idempotency, concurrency), [`levels`] (crossings, history, invalidation),
//! [`cache`] (hits, misses, staleness), [`producers`] (events published on
//! the Redis channel and stream, rejected messages), [`compat`] (the paths
//! where Spin versions differ), [`faults`] (Redis, scorer and Postgres
//! failures on private servers), [`metrics`] (the Prometheus scrape: exact
//! figures after a known sequence, its token), [`retention`] (pruning old events and
//! rejected messages; pruned conversations resent), [`robustness`] (generated malformed
//! requests), [`scale`] (the app as separate OS processes, two HTTP and three
//! scorers, one of them killed mid-stream, scoring thousands of events),
//! [`hostile`] (what one hostile client, producer or user could once do to
//! everyone else, each shown bounded), [`traces`] (a `traceparent` followed
//! from a request's log line to the scorer's line of its event), [`outbox`] (level
//! changes published on their Redis Stream, a Redis outage included), [`decay`]
//! (inactivity decay: each day once, across a level boundary, a returning user),
//! [`user_data`] (the history paged while events are scored, the export, the erasure).
//!
//! `SPIN_COMPAT` (`3.6`, `4.0`, `4.1`; `4.0` when unset) picks the Spin line
//! the host imitates; `scripts/test.sh` runs the suite under `3.6` and `4.0`.

mod bounds;
mod cache;
mod compat;
mod decay;
mod errors;
mod faults;
mod hostile;
mod levels;
mod metrics;
mod outbox;
mod plain;
mod producers;
mod retention;
mod robustness;
mod roles;
mod routes;
mod scale;
mod scoring;
mod support;
mod traces;
mod user_data;
