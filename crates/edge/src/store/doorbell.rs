//! Whether a doorbell is on its way to a scorer wake-up that has not started
//! yet: the mark that lets a conversation end skip the doorbell (and its
//! Redis connection) when one is already coming. A conversation end marks it
//! with its event ([`super::record_event_and_mark_doorbell`]); a wake-up
//! clears it here.

use friendship_queries::doorbell;

use crate::db::{Db, DbError};

/// How long a mark stands when no wake-up clears it (no scorer runs, or its
/// doorbell was lost): the bound on a doorbell skipped for nothing.
pub const MARK_LIFETIME_MS: i64 = 1_000;

/// Clears the mark as a wake-up starts, before it claims anything: events
/// committed from now on need a doorbell of their own.
pub fn clear_rung(db: &Db) -> Result<(), DbError> {
    db.write(&doorbell::CLEAR, &[]).map(|_| ())
}
