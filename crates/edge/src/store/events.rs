//! The durable event record: accept an event, show it, redrive, and the
//! scorer's claim and outcomes.

use chrono::{DateTime, Utc};
use friendship_domain::ConversationEnd;
use friendship_queries::events;
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, DbError};

/// The answer to a conversation-end post.
pub struct Recorded {
    pub processing_id: Uuid,
    /// The conversation had been recorded before (same user and payload).
    pub repeat: bool,
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The conversation id is recorded with another user or payload.
    #[error("this conversation_id was already recorded with a different user or payload")]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Records an event durably, once per conversation id. A repeat with the same
/// user and payload answers the original id; anything else is a conflict.
/// A new event costs one round trip: its processing id is generated here.
pub fn record_event(db: &Db, event: &ConversationEnd) -> Result<Recorded, RecordError> {
    let payload = serde_json::to_string(&event.metadata)
        .map_err(|e| DbError::decoding(format!("serialising an event: {e}")))?;
    let processing_id = Uuid::new_v4();
    let conversation_id = event.conversation_id.as_str().to_owned();
    let inserted = db.write(
        &events::INSERT_EVENT,
        &[
            db::uuid_param(processing_id),
            P::Str(conversation_id.clone()),
            P::Str(event.user_id.as_str().to_owned()),
            P::Str(payload.clone()),
        ],
    )?;
    if inserted == 1 {
        return Ok(Recorded {
            processing_id,
            repeat: false,
        });
    }
    #[derive(Deserialize)]
    struct Existing {
        processing_id: Uuid,
        user_id: String,
        same_payload: bool,
    }
    let existing: Existing = db
        .read_one(
            &events::FIND_EVENT_BY_CONVERSATION,
            &[P::Str(conversation_id), P::Str(payload)],
        )?
        .ok_or_else(|| DbError::decoding("a conflicting conversation vanished".into()))?;
    if existing.user_id != event.user_id.as_str() || !existing.same_payload {
        return Err(RecordError::Conflict);
    }
    Ok(Recorded {
        processing_id: existing.processing_id,
        repeat: true,
    })
}

/// An event as `GET /api/v1/conversations/{processing_id}` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventView {
    pub processing_id: Uuid,
    pub conversation_id: String,
    pub user_id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub accepted_at: DateTime<Utc>,
    #[serde(deserialize_with = "db::utc::option::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339_option")]
    pub processed_at: Option<DateTime<Utc>>,
}

pub fn get_event(db: &Db, processing_id: Uuid) -> Result<Option<EventView>, DbError> {
    db.read_one(&events::GET_EVENT, &[db::uuid_param(processing_id)])
}

/// Requeues failed events and pending ones older than `older_than_seconds`.
pub fn redrive(db: &Db, older_than_seconds: f64) -> Result<u64, DbError> {
    db.write(&events::REDRIVE, &[P::Floating64(older_than_seconds)])
}

/// Whether any event is due (one cheap read, no lock).
pub fn any_due(db: &Db) -> Result<bool, DbError> {
    #[derive(Deserialize)]
    struct Due {
        due: bool,
    }
    Ok(db.read_single::<Due>(&events::ANY_DUE, &[])?.due)
}

/// A due event, claimed (locked) by the current transaction.
#[derive(Debug, Deserialize)]
pub struct Claimed {
    pub processing_id: Uuid,
    pub user_id: String,
    /// The conversation's metadata, as recorded (JSON).
    pub payload: String,
    /// Attempts used so far.
    pub attempts: i32,
    /// The database's clock: every date of the scoring uses it.
    #[serde(deserialize_with = "db::utc::deserialize")]
    pub now: DateTime<Utc>,
}

/// Claims up to `limit` due events, oldest first, inside a transaction.
pub fn claim_due(db: &Db, limit: usize) -> Result<Vec<Claimed>, DbError> {
    db.read(
        &events::CLAIM_DUE_EVENTS,
        &[P::Int64(i64::try_from(limit).unwrap_or(i64::MAX))],
    )
}

/// Marks a claimed event processed (in the transaction of its effect).
pub fn mark_processed(db: &Db, processing_id: Uuid) -> Result<(), DbError> {
    db.write(&events::MARK_PROCESSED, &[db::uuid_param(processing_id)])
        .map(|_| ())
}

/// Marks an event failed for good: its payload can never be scored.
pub fn mark_unprocessable(db: &Db, processing_id: Uuid, error: &str) -> Result<(), DbError> {
    db.write(
        &events::MARK_UNPROCESSABLE,
        &[db::uuid_param(processing_id), P::Str(error.to_owned())],
    )
    .map(|_| ())
}

/// Records a failed attempt: retried after `delay`, or `failed` once the
/// event has used `max_attempts`.
pub fn record_failure(
    db: &Db,
    processing_id: Uuid,
    error: &str,
    max_attempts: u32,
    delay: std::time::Duration,
) -> Result<(), DbError> {
    db.write(
        &events::RECORD_FAILURE,
        &[
            db::uuid_param(processing_id),
            P::Str(error.to_owned()),
            P::Int32(i32::try_from(max_attempts).unwrap_or(i32::MAX)),
            P::Floating64(delay.as_secs_f64()),
        ],
    )
    .map(|_| ())
}
