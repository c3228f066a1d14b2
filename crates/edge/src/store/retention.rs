//! Retention: the bounded pruning of processed events, rejected messages
//! and published level changes (the outbox's rows) older than their window,
//! run by scorer wake-ups that found nothing to score (`crate::scorer`). A pruned event leaves its key (conversation id,
//! processing id, user id, payload digest) behind, so idempotency survives
//! it; see `friendship_queries::retention`.

use friendship_queries::retention;
use spin_sdk::pg4::ParameterValue as P;

use crate::config::Retention;
use crate::db::{Db, DbError};

/// Rows one wake-up deletes at most, events first, then rejected messages
/// with what is left: each statement is one bounded batch, so a wake-up's
/// pruning takes milliseconds, and an old backlog is worked off over
/// successive idle wake-ups (every scorer's, each taking its own rows).
pub const MAX_PRUNED_PER_WAKE: u64 = 1_000;

/// What one wake-up's pruning did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Resends that raced the pruning of their conversation, ended without
    /// effect (`SETTLE_PRUNED_REPEATS`).
    pub settled: u64,
    /// Processed events deleted, their keys kept.
    pub events: u64,
    /// Rejected messages deleted.
    pub rejected: u64,
    /// Published level changes deleted from the outbox (their transitions
    /// stay).
    pub level_changes: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// Ends resends that raced a pruning, then deletes up to
/// [`MAX_PRUNED_PER_WAKE`] rows past their window: processed events, then
/// rejected messages, then level changes published more than
/// `event_retention_days` ago (never an unpublished one). Each statement
/// commits on its own.
pub fn prune(db: &Db, retention: &Retention) -> Result<Pruned, DbError> {
    let batch = |n: u64| P::Int64(i64::try_from(n).unwrap_or(i64::MAX));
    let settled = db.write(
        &retention::SETTLE_PRUNED_REPEATS,
        &[batch(MAX_PRUNED_PER_WAKE)],
    )?;
    let events = db.write(
        &retention::PRUNE_EVENTS,
        &[
            P::Int32(i32::from(retention.event_days.get())),
            batch(MAX_PRUNED_PER_WAKE),
        ],
    )?;
    let left = MAX_PRUNED_PER_WAKE.saturating_sub(events);
    let rejected = if left == 0 {
        0
    } else {
        db.write(
            &retention::PRUNE_REJECTED,
            &[
                P::Int32(i32::from(retention.rejected_days.get())),
                batch(left),
            ],
        )?
    };
    let left = left.saturating_sub(rejected);
    let level_changes = if left == 0 {
        0
    } else {
        db.write(
            &retention::PRUNE_PUBLISHED,
            &[P::Int32(i32::from(retention.event_days.get())), batch(left)],
        )?
    };
    Ok(Pruned {
        settled,
        events,
        rejected,
        level_changes,
    })
}
