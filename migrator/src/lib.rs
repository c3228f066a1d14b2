//! The native migrator: owns the Postgres schema that every Spin component relies on.
//!
//! - [`MIGRATOR`]: the reversible sqlx migrations of `migrations/`, embedded at build time.
//! - [`schema`]: connecting, and `up` / `down` / `status` over those migrations.
//! - [`mod@seed`]: the default agent catalogue as data, and its idempotent insertion.
//! - [`error`]: the one error type, whose messages are single lines without secrets.
//! - [`testing`]: test support only, a scratch database per test (dropped with
//!   it) for the database tests of this crate, of `friendship-queries` and of
//!   the end-to-end suite.
//!
//! `main.rs` is a thin clap front end over these; tests drive the same functions.

pub mod error;
pub mod schema;
pub mod seed;
pub mod testing;

pub use error::MigratorError;
pub use schema::{connect, down, status, up, DownCount, MigrationState, MigrationStatus};
pub use seed::{seed, SeedReport};

/// Every migration of `migrations/` (`sqlx migrate add -r` naming: each version has an
/// `.up.sql` and a `.down.sql`). Each file runs as one simple-query batch inside one
/// transaction, so no statement splitting ever happens on our side.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
