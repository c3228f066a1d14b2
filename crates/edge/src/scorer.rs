//! The scorer's work on each doorbell: claim every due event from Postgres
//! (not only the one named), score each exactly once in effect, retry failures
//! with exponential backoff and full jitter, and dead-letter an event after its
//! last attempt.
//!
//! Exactly once in effect: the claim (`FOR UPDATE SKIP LOCKED`), the score
//! change, the history and the `processed` mark commit in one transaction, and
//! the history holds at most one line per event (a unique index).

use std::time::{Duration, Instant};

use friendship_domain::{
    conversation_score_change, next_streak, topic_updates, ConversationMetadata, Doorbell,
};
use friendship_queries::{events, friendship};
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::cache::Cache;
use crate::config::RetryPolicy;
use crate::db::{self, Db};
use crate::error::ApiError;
use crate::log;
use crate::store::{self, Cause, Change};

/// Events scored per wake-up at most, so one wake never runs unbounded.
pub const MAX_EVENTS_PER_WAKE: usize = 5_000;
/// Time one wake-up may spend before handing over to the next doorbell.
pub const MAX_WAKE_DURATION: Duration = Duration::from_secs(20);

/// What became of one claimed event.
enum Outcome {
    Scored {
        processing_id: Uuid,
        changed: store::Changed,
    },
    Unprocessable {
        processing_id: Uuid,
        error: String,
    },
}

/// Handles one message of the events channel.
pub fn handle_message(payload: &[u8]) -> Result<(), ApiError> {
    let doorbell = Doorbell::from_json(payload).map_err(|e| {
        log::event(
            "doorbell_rejected",
            serde_json::json!({ "error": e.to_string(), "bytes": payload.len() }),
        );
        ApiError::Validation {
            field: None,
            message: format!("not a doorbell: {e}"),
        }
    })?;
    let policy = RetryPolicy::load()?;
    let db = Db::open()?;
    let due: bool = db
        .query(events::ANY_DUE, &[])?
        .first()
        .map(|row| row.get("due"))
        .transpose()?
        .unwrap_or(false);
    if !due {
        return Ok(());
    }
    let started = Instant::now();
    let mut scored = 0usize;
    while scored < MAX_EVENTS_PER_WAKE && started.elapsed() < MAX_WAKE_DURATION {
        match score_next(&db, &policy)? {
            Some(()) => scored += 1,
            None => {
                // Idle ticks are the common case; only a wake that did work is worth a line.
                if scored > 0 {
                    log::event(
                        "scorer_wake",
                        serde_json::json!({ "doorbell": doorbell, "scored": scored, "ms": started.elapsed().as_millis() as u64 }),
                    );
                }
                return Ok(());
            }
        }
    }
    // Budget spent with work left: ring again so the next wake carries on.
    log::event(
        "scorer_wake",
        serde_json::json!({ "doorbell": doorbell, "scored": scored, "continued": true }),
    );
    crate::doorbell::ring(&Doorbell::Tick)
}

/// Claims and scores the next due event. `Ok(None)` when none is due; an
/// error only when the database itself fails (the loop stops; the event stays
/// pending for the next wake).
fn score_next(db: &Db, policy: &RetryPolicy) -> Result<Option<()>, ApiError> {
    let mut claimed: Option<(Uuid, i32)> = None;
    let result = db.transaction(|db| {
        let rows = db.query(events::CLAIM_DUE_EVENT, &[])?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let processing_id = db::uuid_of(&row, "processing_id")?;
        claimed = Some((processing_id, row.get("attempts")?));
        let user_id: String = row.get("user_id")?;
        let payload: String = row.get("payload")?;
        let now = row.utc("now")?;
        let metadata: ConversationMetadata = match serde_json::from_str(&payload) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Some(Outcome::Unprocessable {
                    processing_id,
                    error: format!("payload does not decode: {e}"),
                }))
            }
        };

        store::ensure_user(db, &user_id)?;
        let locked = db.query(
            friendship::LOCK_FOR_CONVERSATION,
            &[P::Str(user_id.clone())],
        )?;
        let row = locked
            .first()
            .ok_or_else(|| ApiError::Internal(format!("user {user_id} vanished")))?;
        let last = row.utc_opt("last_interaction_date")?;
        let streak: i32 = row.get("streak_day")?;
        let streak = next_streak(
            last.map(|t| t.date_naive()),
            streak.max(0) as u32,
            now.date_naive(),
        );

        let topics = topic_updates(&metadata, now);
        let changed = store::apply_change(
            db,
            &Change {
                user_id: &user_id,
                score_change: conversation_score_change(&metadata),
                turns_increment: i64::from(metadata.total_turns.get()),
                streak_day: Some(i32::try_from(streak).unwrap_or(i32::MAX)),
                last_emotion: Some(metadata.emotion),
                topics: &topics,
                processing_id: Some(processing_id),
                cause: Cause::Conversation,
            },
        )?;
        db.execute(events::MARK_PROCESSED, &[db::uuid_param(processing_id)])?;
        Ok(Some(Outcome::Scored {
            processing_id,
            changed,
        }))
    });

    match result {
        Ok(None) => Ok(None),
        Ok(Some(Outcome::Scored {
            processing_id,
            changed,
        })) => {
            if changed.level_changed() {
                let user_id = &changed.status.user_id;
                log::level_transition(
                    user_id,
                    changed.previous_level.as_str(),
                    changed.status.friendship_level.as_str(),
                    changed.status.friendship_score,
                    Cause::Conversation.as_str(),
                );
                Cache::open().invalidate(user_id, "level_changed");
            }
            log::event(
                "event_processed",
                serde_json::json!({ "processing_id": processing_id, "user_id": changed.status.user_id }),
            );
            Ok(Some(()))
        }
        Ok(Some(Outcome::Unprocessable {
            processing_id,
            error,
        })) => {
            db.execute(
                events::MARK_UNPROCESSABLE,
                &[db::uuid_param(processing_id), P::Str(error.clone())],
            )?;
            log::event(
                "event_failed",
                serde_json::json!({ "processing_id": processing_id, "error": error, "retry": false }),
            );
            Ok(Some(()))
        }
        Err(error) => {
            // A database outage is not the event's fault: it stays pending,
            // due at once, and the next wake-up scores it.
            if matches!(error, ApiError::Unavailable { .. }) {
                return Err(error);
            }
            let Some((processing_id, attempts)) = claimed else {
                return Err(error);
            };
            let attempt = u32::try_from(attempts).unwrap_or(0) + 1;
            let delay = friendship_domain::backoff_delay(attempt, policy.base_ms, &mut rand::rng());
            let rows = db.query(
                events::RECORD_FAILURE,
                &[
                    db::uuid_param(processing_id),
                    P::Str(error.to_string()),
                    P::Int32(i32::try_from(policy.max_attempts).unwrap_or(i32::MAX)),
                    P::Floating64(delay.as_secs_f64()),
                ],
            )?;
            let status: Option<String> = rows.first().map(|r| r.get("status")).transpose()?;
            log::event(
                "event_failed",
                serde_json::json!({ "processing_id": processing_id, "attempt": attempt, "error": error.to_string(),
                                    "status": status, "retry_in_ms": delay.as_millis() as u64 }),
            );
            Ok(Some(()))
        }
    }
}
