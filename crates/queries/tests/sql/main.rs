//! Native database tests of `friendship-queries`: the very constants the Spin components
//! run, executed with sqlx against a real, freshly migrated Postgres (one database per
//! test, see `migrator::testing`), bound with the Postgres types the components bind,
//! and, for a read, its `sql` decoded from JSON as the components decode it.
//!
//! Modules: `rules` (what holds for every read and every write), `types` (inferred
//! parameter and result types of every statement), `events`, `friendship`,
//! `concurrency`, `levels` (the generated level against the domain rule), `mappings`,
//! `health`, `rejected`, `session`.

mod concurrency;
mod events;
mod friendship;
mod health;
mod levels;
mod mappings;
mod rejected;
mod rules;
mod session;
mod support;
mod types;
