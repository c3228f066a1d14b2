//! The SQL text of the service, in one place.
//!
//! Every statement the components run lives here as a constant, so the same
//! text is executed by the Spin components (through `spin:postgres@4.0.0`) and
//! by the native tests (through sqlx) against a real Postgres.
//!
//! A statement is one of two kinds, and the kind decides how it may run
//! (`docs/spin-platform.md` explains the Spin behaviours behind this):
//! - [`Read`]: run with `query`. Its text is wrapped so that it answers
//!   **exactly one row** whatever matches, holding every matched row as a
//!   JSON array, in the select's order (the aggregate reads the ordered
//!   subquery as it comes; the native tests check the order of every ordered
//!   read). Spin 4.0.0–4.0.2 never return from a `query` that matches no
//!   rows; an aggregate without `GROUP BY` always answers one row, so no read
//!   can hit that. A read changes nothing (a test checks every plan).
//! - [`Write`]: run with `execute`, whose answer is the affected-row count.
//!   Database errors of `execute` reach the guest with their SQLSTATE on every
//!   Spin version, whereas an error raised while a `query`'s rows stream back
//!   is flattened to text (without any SQLSTATE on Spin 3.6). What a write
//!   produced is read back by a [`Read`] in the same transaction. A statement
//!   that may wait on a row lock (and so time out) is a write too: a read
//!   that locks either skips locked rows or finds its rows locked already.
//!
//! Other conventions:
//! - `TIMESTAMPTZ` columns are read as `col AT TIME ZONE 'UTC'` (a plain
//!   `timestamp`, a UTC date-time); JSON renders it without an offset.
//! - Scores are `NUMERIC` in the database, passed in as `float8` and read
//!   back as `::float8`.
//! - JSONB is passed in as text (`$n::text::jsonb`); UUIDs as `uuid` parameters.
//!
//! Each constant documents its parameters (`$n`, with the Postgres type the
//! caller must bind) and, for reads, the fields of each row.
//!
//! Modules: [`events`] (the durable conversation-event record), [`doorbell`]
//! (whether a scorer wake-up is on its way), [`friendship`]
//! (status and its atomic changes, inactivity decay), [`level_changes`]
//! (the outbox of level changes for other services), [`mappings`] (the agent catalogue),
//! [`metrics`] (what `GET /metrics` reads, and the scorer's counters),
//! [`rejected`] (Redis messages the scorer could not accept), [`retention`]
//! (pruning old events and rejected messages, keeping what idempotency
//! needs), [`health`], [`session`] (a pooled connection's transaction state),
//! [`user_data`] (a user's history, export and erasure).

pub mod doorbell;
pub mod events;
pub mod friendship;
pub mod health;
pub mod level_changes;
pub mod mappings;
pub mod metrics;
pub mod rejected;
pub mod retention;
pub mod session;
pub mod user_data;

/// A statement run with `query`; see the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The text sent to the database: the [`Read::select`] wrapped into one
    /// row with one column, `rows`, a JSON array (text) of the matched rows.
    pub sql: &'static str,
    /// The select as written, answering one row per match (for native tests
    /// that read columns directly).
    pub select: &'static str,
}

/// A statement run with `execute`; see the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// The text sent to the database.
    pub sql: &'static str,
}

/// Declares a [`Read`] from string literals (and macros that expand to them).
#[macro_export]
macro_rules! read {
    ($($part:tt)+) => {
        $crate::Read {
            select: concat!($($part)+),
            sql: concat!(
                "WITH r AS (\n",
                $($part)+,
                "\n)\nSELECT coalesce(json_agg(r), '[]')::text AS rows FROM r"
            ),
        }
    };
}

/// Declares a [`Write`] from string literals (and macros that expand to them).
#[macro_export]
macro_rules! write {
    ($($part:tt)+) => {
        $crate::Write { sql: concat!($($part)+) }
    };
}

/// Every read of the crate by name, for the checks that hold for all of them.
pub const READS: &[(&str, &Read)] = &[
    (
        "events::FIND_EVENT_BY_CONVERSATION",
        &events::FIND_EVENT_BY_CONVERSATION,
    ),
    ("events::GET_EVENT", &events::GET_EVENT),
    ("events::LIST_EVENTS", &events::LIST_EVENTS),
    ("events::COUNT_EVENTS", &events::COUNT_EVENTS),
    ("events::ANY_DUE", &events::ANY_DUE),
    ("events::SCORED_EVENTS", &events::SCORED_EVENTS),
    ("events::CLAIM_DUE_EVENTS", &events::CLAIM_DUE_EVENTS),
    ("friendship::GET_STATUS", &friendship::GET_STATUS),
    ("friendship::GET_LEVEL", &friendship::GET_LEVEL),
    (
        "friendship::SUGGESTION_INPUTS",
        &friendship::SUGGESTION_INPUTS,
    ),
    ("friendship::LOCK_USERS", &friendship::LOCK_USERS),
    ("friendship::CLAIM_DECAY", &friendship::CLAIM_DECAY),
    (
        "level_changes::CLAIM_UNPUBLISHED",
        &level_changes::CLAIM_UNPUBLISHED,
    ),
    ("mappings::COUNT", &mappings::COUNT),
    ("mappings::LIST", &mappings::LIST),
    ("mappings::GET", &mappings::GET),
    ("mappings::GET_BY_KEY", &mappings::GET_BY_KEY),
    ("mappings::CATALOGUE_VERSION", &mappings::CATALOGUE_VERSION),
    ("metrics::SNAPSHOT", &metrics::SNAPSHOT),
    ("rejected::COUNT", &rejected::COUNT),
    ("rejected::LIST", &rejected::LIST),
    ("health::PROBE", &health::PROBE),
    ("session::CLEAN", &session::CLEAN),
    ("user_data::HISTORY", &user_data::HISTORY),
    ("user_data::EXPORT_EVENTS", &user_data::EXPORT_EVENTS),
    (
        "user_data::EXPORT_TRANSITIONS",
        &user_data::EXPORT_TRANSITIONS,
    ),
    ("user_data::EXPORT_REJECTED", &user_data::EXPORT_REJECTED),
];

/// The reads that lock the rows they return (`FOR UPDATE`), inside a transaction.
pub const LOCKING_READS: &[&Read] = &[
    &events::CLAIM_DUE_EVENTS,
    &friendship::LOCK_USERS,
    &friendship::CLAIM_DECAY,
    &level_changes::CLAIM_UNPUBLISHED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_wraps_its_select_into_one_json_row() {
        let r: Read = read!("SELECT 1 AS ", "x");
        assert_eq!(r.select, "SELECT 1 AS x");
        assert!(r.sql.starts_with("WITH r AS (\nSELECT 1 AS x\n)"));
        assert!(r
            .sql
            .ends_with("SELECT coalesce(json_agg(r), '[]')::text AS rows FROM r"));
    }

    #[test]
    fn every_read_is_listed_once() {
        for (i, (name, _)) in READS.iter().enumerate() {
            assert!(
                !READS[i + 1..].iter().any(|(other, _)| other == name),
                "{name} is listed twice"
            );
        }
        for read in LOCKING_READS {
            assert!(READS.iter().any(|(_, r)| r == read));
            assert!(read.select.contains("FOR UPDATE"));
        }
    }
}
