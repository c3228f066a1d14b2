//! The doorbell that wakes the scorer, in one place: whether one must be
//! rung, ringing it, and clearing the mark as a wake-up starts.
//!
//! Pub/sub is a doorbell, not the queue (docs/architecture.md, decision 1):
//! the event is in Postgres before anyone rings, and a lost doorbell delays
//! an event until the next wake-up, it never loses it.
//!
//! - [`record_and_mark`]: a conversation end records its event, then marks
//!   the doorbell (`friendship_queries::doorbell::RING`, the one row of
//!   `scorer_doorbell`) on the same connection: the caller publishes a
//!   doorbell only when none is on its way to a wake-up that has not started
//!   yet, which spares most requests an outbound Redis connection.
//! - [`clear`]: every wake-up clears the mark before it claims anything, so
//!   an event whose doorbell was skipped committed before a wake-up that has
//!   yet to claim.
//! - [`ring`]: publishes a doorbell on the events channel. Its error is the
//!   doorbell's own ([`DoorbellError`]): the scorer and the routes log it,
//!   and a failed doorbell never fails a request (the event is already in
//!   Postgres).

use friendship_domain::{ConversationEnd, Doorbell};
use friendship_queries::doorbell;
use spin_sdk::pg4::ParameterValue as P;

use crate::config;
use crate::db::{Db, DbError};
use crate::store::{self, RecordError, Recorded};

/// How long a mark stands when no wake-up clears it (no scorer runs, or its
/// doorbell was lost): the bound on a doorbell skipped for nothing.
pub const MARK_LIFETIME_MS: i64 = 1_000;

/// Why a doorbell was not published.
#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("queue is unavailable: {0}")]
    Redis(String),
}

/// Records an event as [`store::record_event`] does, then marks the
/// doorbell on the same connection (`doorbell::RING`, once the event has
/// committed): the answer, and whether the caller must publish the doorbell
/// (none is on its way to a wake-up that has not started yet). Two
/// statements in all: the mark also proves the connection clean
/// ([`Db::write_then_probe`]). The event keeps `trace_id`, the posting
/// request's, for the scorer's log lines.
pub fn record_and_mark(
    db: &Db,
    event: &ConversationEnd,
    trace_id: Option<&str>,
) -> Result<(Recorded, bool), RecordError> {
    let mut must_ring = false;
    let mut answers = store::events::record_with(db, &[(event, trace_id)], |insert| {
        let (inserted, marked) =
            db.write_then_probe(insert, (&doorbell::RING, &[P::Int64(MARK_LIFETIME_MS)]))?;
        must_ring = marked == 1;
        Ok(inserted)
    })?;
    let answer = answers.pop().unwrap_or_else(|| {
        Err(DbError::decoding("no answer for a recorded event".into()).into())
    })?;
    Ok((answer, must_ring))
}

/// Clears the mark as a wake-up starts, before it claims anything: events
/// committed from now on need a doorbell of their own.
pub fn clear(db: &Db) -> Result<(), DbError> {
    db.write(&doorbell::CLEAR, &[]).map(|_| ())
}

/// Publishes a doorbell on the events channel (one outbound Redis connection).
pub fn ring(doorbell: &Doorbell) -> Result<(), DoorbellError> {
    let channel = config::events_channel()?;
    let url = config::redis_url()?;
    spin_sdk::redis::Connection::open(&url)
        .and_then(|redis| redis.publish(&channel, &doorbell.to_json()))
        .map_err(|e| DoorbellError::Redis(e.to_string()))
}
