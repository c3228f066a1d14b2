//! Native database tests of `friendship-queries`: the very constants the Spin components
//! run, executed with sqlx against a real, freshly migrated Postgres (one database per
//! test, see `migrator::testing`), bound with the Postgres types the components bind,
//! and, for a read, its `sql` decoded from JSON as the components decode it.
//!
//! Modules: `rules` (what holds for every read and every write), `types` (inferred
//! parameter and result types of every statement), `events`, `friendship`,
//! `concurrency`, `decay` (inactivity decay, a day once), `doorbell`, `level_changes` (the
//! outbox of level changes and its relay's claim), `levels` (the generated level against the
//! domain rule), `mappings`,
//! `metrics` (the scrape's counters and plans),
//! `health`, `rejected`, `retention` (pruning, kept keys, the race with a resend), `session`,
//! `status` (every status literal of the SQL against the domain's `EventStatus`), `user_data`
//! (the history's cursor, the erasure and its keys).

mod concurrency;
mod decay;
mod doorbell;
mod events;
mod friendship;
mod health;
mod level_changes;
mod levels;
mod mappings;
mod metrics;
mod rejected;
mod retention;
mod rules;
mod session;
mod status;
mod support;
mod types;
mod user_data;
