//! The scorer's work on each wake-up (any message of the events channel):
//! record the event the message carries, if any, and the new entries of the
//! events stream ([`crate::inbound`]); then claim due events from Postgres in
//! batches (not only the ones just recorded), score each exactly once in
//! effect, retry failures with exponential backoff and full jitter, and
//! dead-letter an event after its last attempt.
//!
//! Exactly once in effect: the claim (`FOR UPDATE SKIP LOCKED`), the score
//! change, the history and the `processed` mark commit in one transaction,
//! and the history holds at most one line per event (a unique index). A batch
//! in which an event fails is run again with a savepoint per event, so one
//! bad event rolls back only its own work; a database outage rolls back the
//! whole batch, whose events stay pending for the next wake-up.

use std::time::{Duration, Instant};

use friendship_domain::{
    conversation_score_change, next_streak, topic_updates, ConversationMetadata, Doorbell,
};

use crate::cache;
use crate::config::{self, RetryPolicy};
use crate::db::{Db, DbError, DbErrorKind};
use crate::inbound;
use crate::log;
use crate::store::{self, Cause, Change, Changed, Claimed};

/// Events claimed per transaction.
pub const BATCH_SIZE: usize = 100;
/// Events scored per wake-up at most, so one wake never runs unbounded.
pub const MAX_EVENTS_PER_WAKE: usize = 5_000;
/// Time one wake-up may spend before handing over to the next doorbell.
pub const MAX_WAKE_DURATION: Duration = Duration::from_secs(20);

/// Why a wake-up ended early. Logged by Spin (the trigger drops the message);
/// every event it did not finish stays pending for the next wake-up.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// What became of one claimed event.
enum Outcome {
    /// Scored; the status after it when the level moved.
    Scored(Option<Changed>),
    Failed {
        error: String,
        attempt: u32,
        final_attempt: bool,
        retry_in: Duration,
    },
    Unprocessable {
        error: String,
    },
}

/// Entries of the events stream recorded per wake-up at most.
pub const MAX_STREAM_ENTRIES_PER_WAKE: usize = 2_000;

/// Handles one message of the events channel.
pub fn handle_message(payload: &[u8]) -> Result<(), WakeError> {
    let config = |e: crate::ApiError| WakeError::Config(e.to_string());
    let policy = RetryPolicy::load().map_err(config)?;
    let stream = inbound::Stream {
        key: config::text("events_stream").map_err(config)?,
        group: config::text("stream_group").map_err(config)?,
        claim_idle_ms: config::number("stream_claim_idle_ms").map_err(config)?,
    };
    let db = Db::open()?;
    inbound::on_channel_message(&db, payload)?;
    let stream_left = drain_stream(&db, &stream);
    let due_left = store::any_due(&db)? && !score_due(&db, &policy)?;
    // Budget spent with work left: ring again so the next wake carries on.
    if stream_left || due_left {
        ring();
    }
    Ok(())
}

/// Scores due events in batches until none is left (true) or the wake-up's
/// budget is spent (false).
fn score_due(db: &Db, policy: &RetryPolicy) -> Result<bool, DbError> {
    let started = Instant::now();
    let mut scored = 0usize;
    let mut finished = false;
    while scored < MAX_EVENTS_PER_WAKE && started.elapsed() < MAX_WAKE_DURATION {
        let done = score_batch(db, policy)?;
        if done == 0 {
            finished = true;
            break;
        }
        scored += done;
    }
    // Idle ticks are the common case; only a wake that did work is worth a line.
    if scored > 0 {
        log::event(
            "scorer_wake",
            serde_json::json!({ "scored": scored, "ms": started.elapsed().as_millis() as u64,
                                "continued": !finished }),
        );
    }
    Ok(finished)
}

/// Records what the events stream holds; true when entries may be left. A
/// Redis failure is logged and scoring goes on: the entries stay in the
/// stream for the next wake-up.
fn drain_stream(db: &Db, stream: &inbound::Stream) -> bool {
    let drained = crate::doorbell::open()
        .map_err(|e| inbound::StreamError::Redis(e.to_string()))
        .and_then(|redis| stream.drain(db, &redis, MAX_STREAM_ENTRIES_PER_WAKE));
    match drained {
        Ok(handled) => handled >= MAX_STREAM_ENTRIES_PER_WAKE,
        Err(e) => {
            log::event(
                "stream_error",
                serde_json::json!({ "stream": stream.key, "error": e.to_string() }),
            );
            false
        }
    }
}

/// Rings the doorbell so that the next wake-up carries on where this one stopped.
fn ring() {
    if let Err(e) = crate::doorbell::ring(&Doorbell::Tick) {
        log::event(
            "doorbell_failed",
            serde_json::json!({ "error": e.to_string() }),
        );
    }
}

/// Claims and finishes one batch in one transaction; how many events it
/// finished (0 when none was due).
///
/// The batch runs without savepoints first (two round trips fewer per
/// event). If an event fails, that transaction is rolled back whole and the
/// batch is claimed again and run with a savepoint per event, so the failure
/// is recorded against its own event only.
fn score_batch(db: &Db, policy: &RetryPolicy) -> Result<usize, DbError> {
    let outcomes = match db.transaction(|db| run_batch(db, policy, false)) {
        Ok(outcomes) => outcomes,
        Err(e) if e.kind == DbErrorKind::Unavailable => return Err(e),
        Err(_) => db.transaction(|db| run_batch(db, policy, true))?,
    };
    for (event, outcome) in &outcomes {
        report(event, outcome);
    }
    Ok(outcomes.len())
}

fn run_batch(
    db: &Db,
    policy: &RetryPolicy,
    careful: bool,
) -> Result<Vec<(Claimed, Outcome)>, DbError> {
    let mut claimed = store::claim_due(db, BATCH_SIZE)?;
    // Every scorer locks users in the same order, so batches never deadlock;
    // the sort is stable, so one user's events keep their order.
    claimed.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let mut outcomes = Vec::with_capacity(claimed.len());
    for event in claimed {
        let outcome = finish(db, &event, policy, careful)?;
        outcomes.push((event, outcome));
    }
    Ok(outcomes)
}

/// Scores one claimed event, or records why it could not be. Without
/// `careful`, any failure ends the batch (the caller retries it carefully);
/// with it, the event runs in a savepoint and only an outage ends the batch.
fn finish(
    db: &Db,
    event: &Claimed,
    policy: &RetryPolicy,
    careful: bool,
) -> Result<Outcome, DbError> {
    let metadata: ConversationMetadata = match serde_json::from_str(&event.payload) {
        Ok(metadata) => metadata,
        Err(e) => {
            let error = format!("payload does not decode: {e}");
            store::mark_unprocessable(db, event.processing_id, &error)?;
            return Ok(Outcome::Unprocessable { error });
        }
    };
    if !careful {
        return score(db, event, &metadata).map(Outcome::Scored);
    }
    match db.savepoint(|db| score(db, event, &metadata)) {
        Ok(changed) => Ok(Outcome::Scored(changed)),
        Err(error) if error.kind == DbErrorKind::Unavailable => Err(error),
        Err(error) => {
            let attempt = u32::try_from(event.attempts).unwrap_or(0) + 1;
            let retry_in =
                friendship_domain::backoff_delay(attempt, policy.base_ms, &mut rand::rng());
            let error = error.to_string();
            store::record_failure(
                db,
                event.processing_id,
                &error,
                policy.max_attempts,
                retry_in,
            )?;
            Ok(Outcome::Failed {
                error,
                attempt,
                final_attempt: attempt >= policy.max_attempts,
                retry_in,
            })
        }
    }
}

/// The effect of one conversation, applied in SQL on the locked user row;
/// the status after it when the level moved.
fn score(
    db: &Db,
    event: &Claimed,
    metadata: &ConversationMetadata,
) -> Result<Option<Changed>, DbError> {
    let locked = store::lock_user(db, &event.user_id)?;
    let streak = next_streak(
        locked.last_interaction.map(|t| t.date_naive()),
        locked.streak_day.max(0) as u32,
        event.now.date_naive(),
    );
    let topics = topic_updates(metadata, event.now);
    let level_moved = store::apply_change(
        db,
        &Change {
            user_id: &event.user_id,
            score_change: conversation_score_change(metadata),
            turns_increment: i64::from(metadata.total_turns.get()),
            streak_day: Some(i32::try_from(streak).unwrap_or(i32::MAX)),
            last_emotion: Some(metadata.emotion),
            topics: &topics,
            processing_id: Some(event.processing_id),
            cause: Cause::Conversation,
        },
    )?;
    store::mark_processed(db, event.processing_id)?;
    if level_moved {
        return store::changed(db, &event.user_id, &locked).map(Some);
    }
    Ok(None)
}

/// After the commit: the log line of each outcome, and the consequences of
/// level changes.
fn report(event: &Claimed, outcome: &Outcome) {
    let id = event.processing_id;
    match outcome {
        Outcome::Scored(changed) => {
            if let Some(changed) = changed {
                cache::after_change(changed, Cause::Conversation);
            }
            log::event(
                "event_processed",
                serde_json::json!({ "processing_id": id, "user_id": event.user_id }),
            );
        }
        Outcome::Failed {
            error,
            attempt,
            final_attempt,
            retry_in,
        } => log::event(
            "event_failed",
            serde_json::json!({ "processing_id": id, "attempt": attempt, "error": error,
                                "status": if *final_attempt { "failed" } else { "pending" },
                                "retry_in_ms": retry_in.as_millis() as u64 }),
        ),
        Outcome::Unprocessable { error } => log::event(
            "event_failed",
            serde_json::json!({ "processing_id": id, "error": error, "retry": false }),
        ),
    }
}
