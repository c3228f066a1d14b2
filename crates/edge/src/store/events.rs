//! The durable event record: accept an event, show it, redrive, and the
//! scorer's claim and outcomes.

use chrono::{DateTime, Utc};
use friendship_domain::ConversationEnd;
use friendship_queries::{events, Write};
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, DbError};
use crate::http::Page;
use crate::store::{paged, Paged};

/// The answer to a conversation-end post.
pub struct Recorded {
    pub processing_id: Uuid,
    /// The conversation had been recorded before (same user and payload).
    pub repeat: bool,
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The user's conversation id is recorded with another payload.
    #[error("conversation_id was already recorded for this user with a different payload")]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Records an event durably, once per user and conversation id (another
/// user's conversation of the same id is another conversation). A repeat with
/// the same payload answers the original id; another payload is a conflict.
/// A new event costs one round trip: its processing id is generated here.
pub fn record_event(db: &Db, event: &ConversationEnd) -> Result<Recorded, RecordError> {
    let mut answers = record_events(db, &[event])?;
    answers
        .pop()
        .unwrap_or_else(|| Err(DbError::decoding("no answer for a recorded event".into()).into()))
}

/// Records a batch of events as [`record_event`] records one, in one
/// statement: a batch of new events costs one round trip and one commit.
/// When some were recorded before (or twice in the batch), each is then
/// looked up to tell the new ones, the repeats and the conflicts apart.
/// The answers follow the order of `batch`.
pub fn record_events(
    db: &Db,
    batch: &[&ConversationEnd],
) -> Result<Vec<Result<Recorded, RecordError>>, DbError> {
    let batch: Vec<_> = batch.iter().map(|event| (*event, None)).collect();
    record_with(db, &batch, |(insert, params)| db.write(insert, params))
}

/// [`record_events`], each event with the trace id of the request that
/// posted it (if any), with `insert` running the insert statement and
/// answering how many rows it inserted.
pub(crate) fn record_with(
    db: &Db,
    batch: &[(&ConversationEnd, Option<&str>)],
    insert: impl FnOnce((&Write, &[P])) -> Result<u64, DbError>,
) -> Result<Vec<Result<Recorded, RecordError>>, DbError> {
    #[derive(Serialize)]
    struct Row<'a> {
        processing_id: Uuid,
        conversation_id: &'a str,
        user_id: &'a str,
        payload: &'a friendship_domain::ConversationMetadata,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<&'a str>,
    }
    let rows: Vec<Row> = batch
        .iter()
        .map(|(event, trace_id)| Row {
            processing_id: Uuid::new_v4(),
            conversation_id: event.conversation_id.as_str(),
            user_id: event.user_id.as_str(),
            payload: &event.metadata,
            trace_id: *trace_id,
        })
        .collect();
    let json = serde_json::to_string(&rows)
        .map_err(|e| DbError::decoding(format!("serialising events: {e}")))?;
    let inserted = insert((&events::INSERT_EVENTS, &[P::Str(json)]))?;
    if inserted == rows.len() as u64 {
        return Ok(rows
            .iter()
            .map(|row| {
                Ok(Recorded {
                    processing_id: row.processing_id,
                    repeat: false,
                })
            })
            .collect());
    }
    rows.iter()
        .map(|row| {
            find_recorded(
                db,
                row.processing_id,
                row.conversation_id,
                row.user_id,
                row.payload,
            )
        })
        .collect()
}

/// What became of one event of a batch some of which was not inserted: new
/// (recorded under the id generated for it), a repeat, or a conflict.
fn find_recorded(
    db: &Db,
    generated: Uuid,
    conversation_id: &str,
    user_id: &str,
    metadata: &friendship_domain::ConversationMetadata,
) -> Result<Result<Recorded, RecordError>, DbError> {
    #[derive(Deserialize)]
    struct Existing {
        processing_id: Uuid,
        user_id: String,
        same_payload: bool,
    }
    let payload = serde_json::to_string(metadata)
        .map_err(|e| DbError::decoding(format!("serialising an event: {e}")))?;
    let existing: Existing = db
        .read_one(
            &events::FIND_EVENT_BY_CONVERSATION,
            &[
                P::Str(conversation_id.to_owned()),
                P::Str(payload),
                P::Str(user_id.to_owned()),
            ],
        )?
        .ok_or_else(|| DbError::decoding("a conflicting conversation vanished".into()))?;
    if existing.processing_id == generated {
        return Ok(Ok(Recorded {
            processing_id: generated,
            repeat: false,
        }));
    }
    if existing.user_id != user_id || !existing.same_payload {
        return Ok(Err(RecordError::Conflict));
    }
    Ok(Ok(Recorded {
        processing_id: existing.processing_id,
        repeat: true,
    }))
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

/// An event as operators list it: [`EventView`] and when it is next due.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListedEvent {
    #[serde(flatten)]
    pub event: EventView,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub next_attempt_at: DateTime<Utc>,
}

/// A page of the events of `status` (`pending` or `failed`), newest first.
pub fn list_events(db: &Db, status: &str, page: Page) -> Result<Paged<ListedEvent>, DbError> {
    let filters = vec![P::Str(status.to_owned())];
    paged(
        db,
        &events::COUNT_EVENTS,
        &events::LIST_EVENTS,
        filters,
        page,
    )
}

/// Requeues the chosen `failed` events (others are left alone); how many.
pub fn redrive_selected(db: &Db, processing_ids: &[Uuid]) -> Result<u64, DbError> {
    let ids: Vec<String> = processing_ids.iter().map(Uuid::to_string).collect();
    db.write(
        &events::REDRIVE_SELECTED,
        &[P::Str(serde_json::Value::from(ids).to_string())],
    )
}

/// Requeues failed events and pending ones older than `older_than_seconds`.
pub fn redrive(db: &Db, older_than_seconds: f64) -> Result<u64, DbError> {
    db.write(&events::REDRIVE, &[P::Floating64(older_than_seconds)])
}

/// What a wake-up has to do, read in one cheap round trip without a lock.
#[derive(Debug, Deserialize)]
pub struct Due {
    /// Some pending event is due.
    pub due: bool,
    /// Some event is `scored` and waits for its cache invalidation.
    pub unfinished: bool,
    /// Some level change waits in the outbox for the relay.
    pub unpublished: bool,
}

pub fn any_due(db: &Db) -> Result<Due, DbError> {
    db.read_single(&events::ANY_DUE, &[])
}

/// An event whose effect committed and moved its user's level.
#[derive(Debug, Deserialize)]
pub struct Unfinished {
    pub processing_id: Uuid,
    pub user_id: String,
}

/// Up to `limit` `scored` events, oldest first.
pub fn scored_events(db: &Db, limit: usize) -> Result<Vec<Unfinished>, DbError> {
    db.read(
        &events::SCORED_EVENTS,
        &[P::Int64(i64::try_from(limit).unwrap_or(i64::MAX))],
    )
}

/// Marks `scored` events `processed`: their users' cached candidates are gone.
pub fn finish_scored(db: &Db, processing_ids: &[Uuid]) -> Result<u64, DbError> {
    if processing_ids.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(processing_ids)
        .map_err(|e| DbError::decoding(format!("serialising processing ids: {e}")))?;
    db.write(&events::FINISH_SCORED, &[P::Str(json)])
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
    /// The W3C trace id of the request that posted it, if any.
    pub trace_id: Option<String>,
    /// The database's clock: every date of the scoring uses it.
    #[serde(deserialize_with = "db::utc::deserialize")]
    pub now: DateTime<Utc>,
}

/// Claims up to `limit` due events, fairly between users (each user's first
/// before anyone's second, oldest first within that), inside a transaction.
pub fn claim_due(db: &Db, limit: usize) -> Result<Vec<Claimed>, DbError> {
    db.read(
        &events::CLAIM_DUE_EVENTS,
        &[P::Int64(i64::try_from(limit).unwrap_or(i64::MAX))],
    )
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
