//! The SQL text of the service, in one place.
//!
//! Every statement the components run lives here as a constant, so the same
//! text is executed by the Spin components (through `spin:postgres@4.0.0`) and
//! by the native tests (through sqlx) against a real Postgres.
//!
//! Conventions, forced by Spin's Postgres interface (see DESIGN.md):
//! - `TIMESTAMPTZ` columns are never returned as such: they are read as
//!   `col AT TIME ZONE 'UTC'` (a plain `timestamp`, a UTC date-time).
//! - Scores are `NUMERIC` in the database, passed in as `float8` and read back
//!   as `::float8`.
//! - JSONB is passed in as text (`$n::text::jsonb`) and read back as `::text`.
//! - UUIDs are passed as `uuid` parameters.
//!
//! Each constant documents its parameters (`$n`, with the Postgres type the
//! caller must bind) and its result columns, in order.
//!
//! Modules: [`events`] (the durable conversation-event record), [`friendship`]
//! (status and its atomic changes), [`mappings`] (the agent catalogue),
//! [`health`], [`session`] (a pooled connection's transaction state).

pub mod events;
pub mod friendship;
pub mod health;
pub mod mappings;
pub mod session;
