//! The statements of the crate bound as the components bind them; the fresh database
//! per test is [`migrator::testing`].
//!
//! Binding: the components bind `text`, `float8`, `int8`, `int4`, `bool`, `uuid` and
//! NULL (see `crates/edge/src/store.rs`); the helpers here bind the same Rust types
//! (`&str`, `f64`, `i64`, `i32`, `bool`, `Uuid`, `Option::None`), so sqlx sends the same
//! Postgres types.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use friendship_domain::{TopicMetric, TopicUpdate};
use friendship_queries::{events, friendship};
use sqlx::PgExecutor;
use uuid::Uuid;

pub use migrator::testing::{
    connect, sqlstate, with_db, with_migrated_db, LOCK_NOT_AVAILABLE, UNDEFINED_TABLE,
    UNIQUE_VIOLATION,
};

/// The database's clock, as a UTC date-time (read natively, where timestamptz decodes).
pub async fn db_now(executor: impl PgExecutor<'_>) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(executor)
        .await
        .unwrap()
}

/// A plain `timestamp` column read as a UTC wall-clock time, as the components read it.
pub fn utc(time: NaiveDateTime) -> DateTime<Utc> {
    time.and_utc()
}

// ----- events ---------------------------------------------------------------

/// [`events::INSERT_EVENT`]: the new processing id, or `None` for a repeat.
pub async fn insert_event(
    executor: impl PgExecutor<'_>,
    conversation_id: &str,
    user_id: &str,
    payload: &str,
) -> Option<Uuid> {
    sqlx::query_scalar(events::INSERT_EVENT)
        .bind(conversation_id)
        .bind(user_id)
        .bind(payload)
        .fetch_optional(executor)
        .await
        .unwrap()
}

/// Records a new event for `user_id`, with a small valid payload; its processing id.
pub async fn new_event(executor: impl PgExecutor<'_>, user_id: &str) -> Uuid {
    let conversation_id = format!("conv-{}", Uuid::new_v4().simple());
    insert_event(executor, &conversation_id, user_id, PAYLOAD)
        .await
        .expect("a new conversation creates an event")
}

/// A conversation-end payload in the domain's normalised form.
pub const PAYLOAD: &str = r#"{"total_turns":4,"user_initiated_questions":1,"emotion":"happy","new_memories_count":0,"topics":[{"name":"music","turns":3,"user_questions":1}]}"#;

/// A row of [`events::CLAIM_DUE_EVENT`].
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub processing_id: Uuid,
    pub user_id: String,
    pub payload: String,
    pub attempts: i32,
    pub now: NaiveDateTime,
}

/// [`events::CLAIM_DUE_EVENT`], on a connection inside a transaction.
pub async fn claim(executor: impl PgExecutor<'_>) -> Option<Claimed> {
    sqlx::query_as(events::CLAIM_DUE_EVENT)
        .fetch_optional(executor)
        .await
        .unwrap()
}

/// A row of [`events::GET_EVENT`].
#[derive(Debug, sqlx::FromRow)]
pub struct EventRow {
    pub processing_id: Uuid,
    pub conversation_id: String,
    pub user_id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub accepted_at: NaiveDateTime,
    pub processed_at: Option<NaiveDateTime>,
}

/// [`events::GET_EVENT`]; panics when the event does not exist.
pub async fn get_event(executor: impl PgExecutor<'_>, processing_id: Uuid) -> EventRow {
    sqlx::query_as(events::GET_EVENT)
        .bind(processing_id)
        .fetch_optional(executor)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("event {processing_id} exists"))
}

/// [`events::RECORD_FAILURE`]: `(status, attempts)`, or `None` when no pending row matched.
pub async fn record_failure(
    executor: impl PgExecutor<'_>,
    processing_id: Uuid,
    error: &str,
    max_attempts: i32,
    delay_seconds: f64,
) -> Option<(String, i32)> {
    sqlx::query_as(events::RECORD_FAILURE)
        .bind(processing_id)
        .bind(error)
        .bind(max_attempts)
        .bind(delay_seconds)
        .fetch_optional(executor)
        .await
        .unwrap()
}

/// [`events::MARK_PROCESSED`]: the number of rows it changed.
pub async fn mark_processed(executor: impl PgExecutor<'_>, processing_id: Uuid) -> u64 {
    sqlx::query(events::MARK_PROCESSED)
        .bind(processing_id)
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

/// `next_attempt_at` as seconds from the database's `now()` (not part of any statement's
/// result, so read directly).
pub async fn due_in_seconds(executor: impl PgExecutor<'_>, processing_id: Uuid) -> f64 {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM next_attempt_at - now())::float8
         FROM conversation_events WHERE processing_id = $1",
    )
    .bind(processing_id)
    .fetch_one(executor)
    .await
    .unwrap()
}

// ----- friendship -----------------------------------------------------------

/// The status columns every status-returning statement reads, decoded as the
/// components decode them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Status {
    pub user_id: String,
    pub friendship_score: f64,
    pub friendship_level: String,
    pub last_interaction_date: Option<NaiveDateTime>,
    pub streak_day: i32,
    pub total_turns: i64,
    pub topic_metrics: String,
    pub last_emotion: Option<String>,
}

impl Status {
    /// The stored topic metrics, decoded into the domain's shape as the components do.
    pub fn metrics(&self) -> BTreeMap<String, TopicMetric> {
        serde_json::from_str(&self.topic_metrics)
            .unwrap_or_else(|e| panic!("topic_metrics {} decode: {e}", self.topic_metrics))
    }
}

/// A row of [`friendship::APPLY_CHANGE`].
#[derive(Debug, sqlx::FromRow)]
pub struct Changed {
    #[sqlx(flatten)]
    pub status: Status,
    pub previous_level: String,
}

/// The parameters of [`friendship::APPLY_CHANGE`], as `store::Change` carries them.
#[derive(Debug, Clone)]
pub struct Change {
    pub user_id: String,
    pub score_change: f64,
    pub turns_increment: i64,
    pub streak_day: Option<i32>,
    pub last_emotion: Option<&'static str>,
    pub topics: BTreeMap<String, TopicUpdate>,
    pub processing_id: Option<Uuid>,
    pub cause: &'static str,
    pub interaction: bool,
}

impl Change {
    /// A service update of `score_change` points: no turns, streak or emotion, not an
    /// interaction.
    pub fn service(user_id: &str, score_change: f64) -> Change {
        Change {
            user_id: user_id.to_owned(),
            score_change,
            turns_increment: 0,
            streak_day: None,
            last_emotion: None,
            topics: BTreeMap::new(),
            processing_id: None,
            cause: "service_update",
            interaction: false,
        }
    }

    /// A scored conversation of event `processing_id`.
    pub fn conversation(
        user_id: &str,
        processing_id: Uuid,
        score_change: f64,
        turns: i64,
    ) -> Change {
        Change {
            turns_increment: turns,
            processing_id: Some(processing_id),
            cause: "conversation",
            interaction: true,
            ..Change::service(user_id, score_change)
        }
    }

    /// Adds a topic update.
    pub fn topic(
        mut self,
        name: &str,
        score_change: f64,
        turns: u64,
        last_date: DateTime<Utc>,
    ) -> Change {
        self.topics.insert(
            name.to_owned(),
            TopicUpdate {
                score_change,
                turns_increment: turns,
                last_date,
            },
        );
        self
    }
}

/// [`friendship::ENSURE_USER`].
pub async fn ensure_user(executor: impl PgExecutor<'_>, user_id: &str) {
    sqlx::query(friendship::ENSURE_USER)
        .bind(user_id)
        .execute(executor)
        .await
        .unwrap();
}

/// [`friendship::APPLY_CHANGE`], bound exactly as `store::apply_change` binds it; `None`
/// when the user does not exist.
pub async fn try_apply(
    executor: impl PgExecutor<'_>,
    change: &Change,
) -> Result<Option<Changed>, sqlx::Error> {
    sqlx::query_as(friendship::APPLY_CHANGE)
        .bind(&change.user_id)
        .bind(change.score_change)
        .bind(change.turns_increment)
        .bind(change.streak_day)
        .bind(change.last_emotion)
        .bind(serde_json::to_string(&change.topics).unwrap())
        .bind(change.processing_id)
        .bind(change.cause)
        .bind(change.interaction)
        .fetch_optional(executor)
        .await
}

/// [`friendship::APPLY_CHANGE`] on an existing user; panics on any failure.
pub async fn apply(executor: impl PgExecutor<'_>, change: &Change) -> Changed {
    try_apply(executor, change)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("user {} exists", change.user_id))
}

/// [`friendship::GET_STATUS`].
pub async fn status(executor: impl PgExecutor<'_>, user_id: &str) -> Option<Status> {
    sqlx::query_as(friendship::GET_STATUS)
        .bind(user_id)
        .fetch_optional(executor)
        .await
        .unwrap()
}

/// A row of `friendship_score_history` (not read by any statement, so read directly).
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct HistoryLine {
    pub cause: String,
    pub processing_id: Option<Uuid>,
    pub score_change: f64,
    pub score_before: f64,
    pub score_after: f64,
}

/// The score history of a user, oldest first.
pub async fn history(executor: impl PgExecutor<'_>, user_id: &str) -> Vec<HistoryLine> {
    sqlx::query_as(
        "SELECT cause, processing_id, score_change::float8 AS score_change,
                score_before::float8 AS score_before, score_after::float8 AS score_after
         FROM friendship_score_history WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await
    .unwrap()
}

/// A row of `friendship_level_transitions`.
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct Transition {
    pub from_level: String,
    pub to_level: String,
    pub score: f64,
    pub cause: String,
    pub processing_id: Option<Uuid>,
}

/// The level transitions of a user, oldest first.
pub async fn transitions(executor: impl PgExecutor<'_>, user_id: &str) -> Vec<Transition> {
    sqlx::query_as(
        "SELECT from_level, to_level, score::float8 AS score, cause, processing_id
         FROM friendship_level_transitions WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await
    .unwrap()
}
