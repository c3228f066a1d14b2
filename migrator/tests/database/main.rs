//! Database tests of the migrator against a real Postgres: each test gets a fresh, empty
//! database (see `migrator::testing`) and drives either the library or the built binary.

mod cli;
mod constraints;
mod schema;
mod seed;
mod support;
