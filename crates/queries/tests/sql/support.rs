//! The statements of the crate run and bound as the components run and bind them; the
//! fresh database per test is [`migrator::testing`].
//!
//! Running: a [`Read`] goes through [`read`], which sends `Read::sql` (not the bare
//! select), insists on the one row with the one TEXT column `rows` that every read
//! answers, and decodes that JSON array with serde into typed rows, as `edge::db::Db::read`
//! does; so what the tests check is the JSON the components decode. A [`Write`] goes
//! through [`write`] and answers its affected-row count, as Spin's `execute` does.
//!
//! Binding: the components bind `text`, `float8`, `int8`, `int4`, `bool`, `uuid` and
//! NULL (see `crates/edge/src/store/`); the helpers here bind the same Rust types
//! (`&str`, `f64`, `i64`, `i32`, `bool`, `Uuid`, `Option::None`), so sqlx sends the same
//! Postgres types.
//!
//! Decoding: rows decode as the components decode them: `AT TIME ZONE 'UTC'` timestamps
//! as [`NaiveDateTime`] from JSON strings without an offset, UUIDs from strings, numbers
//! as numbers, `topic_metrics` as a JSON string holding JSON. Every row type denies
//! unknown fields, so a column added or renamed by a statement fails here first.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use friendship_domain::{Cause, TopicMetric, TopicUpdate};
use friendship_queries::{events, friendship, Read, Write};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Acquire, Column, PgConnection, PgExecutor, Postgres, Row, TypeInfo};
use uuid::Uuid;

pub use migrator::testing::{
    connect, sqlstate, with_db, with_migrated_db, LOCK_NOT_AVAILABLE, UNDEFINED_TABLE,
    UNIQUE_VIOLATION,
};

/// Every write of the crate by name (the crate lists its reads in
/// [`friendship_queries::READS`]); `types::every_constant_of_the_crate_has_a_signature`
/// checks that the two lists hold every statement constant.
pub const WRITES: &[(&str, &Write)] = &[
    ("doorbell::RING", &friendship_queries::doorbell::RING),
    ("doorbell::CLEAR", &friendship_queries::doorbell::CLEAR),
    ("events::INSERT_EVENTS", &events::INSERT_EVENTS),
    ("events::FINISH_SCORED", &events::FINISH_SCORED),
    ("events::RECORD_FAILURE", &events::RECORD_FAILURE),
    ("events::MARK_UNPROCESSABLE", &events::MARK_UNPROCESSABLE),
    ("events::REDRIVE", &events::REDRIVE),
    ("events::REDRIVE_SELECTED", &events::REDRIVE_SELECTED),
    ("friendship::ENSURE_USERS", &friendship::ENSURE_USERS),
    ("friendship::APPLY_CHANGES", &friendship::APPLY_CHANGES),
    ("mappings::INSERT", &friendship_queries::mappings::INSERT),
    ("mappings::REPLACE", &friendship_queries::mappings::REPLACE),
    (
        "mappings::DEACTIVATE",
        &friendship_queries::mappings::DEACTIVATE,
    ),
    (
        "metrics::COUNT_BATCH",
        &friendship_queries::metrics::COUNT_BATCH,
    ),
    ("rejected::INSERT", &friendship_queries::rejected::INSERT),
    (
        "retention::PRUNE_EVENTS",
        &friendship_queries::retention::PRUNE_EVENTS,
    ),
    (
        "retention::SETTLE_PRUNED_REPEATS",
        &friendship_queries::retention::SETTLE_PRUNED_REPEATS,
    ),
    (
        "retention::PRUNE_REJECTED",
        &friendship_queries::retention::PRUNE_REJECTED,
    ),
    (
        "retention::PRUNE_PUBLISHED",
        &friendship_queries::retention::PRUNE_PUBLISHED,
    ),
    (
        "level_changes::MARK_PUBLISHED",
        &friendship_queries::level_changes::MARK_PUBLISHED,
    ),
    (
        "user_data::ERASE_BATCH",
        &friendship_queries::user_data::ERASE_BATCH,
    ),
];

/// The name of a read, for messages (reads of the same text share their names).
pub fn name_of(statement: &Read) -> String {
    let names: Vec<&str> = friendship_queries::READS
        .iter()
        .filter(|(_, r)| *r == statement)
        .map(|(name, _)| *name)
        .collect();
    if names.is_empty() {
        "a read missing from READS".to_owned()
    } else {
        names.join(" or ")
    }
}

// ----- running statements as the components do ------------------------------

/// A [`Read`] being bound; run it with [`ReadQuery::rows`] and friends.
pub struct ReadQuery<'q> {
    name: String,
    query: Query<'q, Postgres, PgArguments>,
}

/// Runs `statement` as the components run it: its `sql`, one row, JSON rows.
pub fn read<'q>(statement: &Read) -> ReadQuery<'q> {
    ReadQuery {
        name: name_of(statement),
        query: sqlx::query(statement.sql),
    }
}

impl<'q> ReadQuery<'q> {
    /// Binds the next parameter.
    pub fn bind<T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>>(
        mut self,
        value: T,
    ) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// The `rows` text of the one row the read answers; panics unless the read answers
    /// exactly one row whose one column is the TEXT `rows`, holding a JSON array.
    pub async fn try_json<'e, 'c: 'e>(
        self,
        executor: impl PgExecutor<'c> + 'e,
    ) -> Result<String, sqlx::Error>
    where
        'q: 'e,
    {
        let name = self.name.clone();
        let answered = self.query.fetch_all(executor).await?;
        assert_eq!(answered.len(), 1, "{name} answers exactly one row");
        let row = &answered[0];
        let columns: Vec<(&str, &str)> = row
            .columns()
            .iter()
            .map(|c| (c.name(), c.type_info().name()))
            .collect();
        assert_eq!(
            columns,
            [("rows", "TEXT")],
            "{name} answers one TEXT column `rows`"
        );
        let json: Option<String> = row.try_get("rows")?;
        let json = json.unwrap_or_else(|| panic!("{name}: `rows` is NULL"));
        let value: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{name}: `rows` is not JSON ({e}): {json}"));
        assert!(
            value.is_array(),
            "{name}: `rows` is not a JSON array: {json}"
        );
        Ok(json)
    }

    /// As [`ReadQuery::try_json`]; panics on a database error.
    pub async fn json<'e, 'c: 'e>(self, executor: impl PgExecutor<'c> + 'e) -> String
    where
        'q: 'e,
    {
        let name = self.name.clone();
        self.try_json(executor)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Every matched row, decoded from the JSON.
    pub async fn try_rows<'e, 'c: 'e, T: DeserializeOwned>(
        self,
        executor: impl PgExecutor<'c> + 'e,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        'q: 'e,
    {
        let name = self.name.clone();
        let json = self.try_json(executor).await?;
        Ok(serde_json::from_str(&json).unwrap_or_else(|e| {
            panic!(
                "{name}: rows do not decode as {} ({e}): {json}",
                std::any::type_name::<T>()
            )
        }))
    }

    /// As [`ReadQuery::try_rows`]; panics on a database error.
    pub async fn rows<'e, 'c: 'e, T: DeserializeOwned>(
        self,
        executor: impl PgExecutor<'c> + 'e,
    ) -> Vec<T>
    where
        'q: 'e,
    {
        let name = self.name.clone();
        self.try_rows(executor)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The one matched row, or `None` when nothing matched; panics on more than one.
    pub async fn optional<'e, 'c: 'e, T: DeserializeOwned>(
        self,
        executor: impl PgExecutor<'c> + 'e,
    ) -> Option<T>
    where
        'q: 'e,
    {
        let name = self.name.clone();
        let mut rows = self.rows(executor).await;
        assert!(rows.len() <= 1, "{name} matched {} rows", rows.len());
        rows.pop()
    }

    /// The one matched row; panics unless exactly one matched.
    pub async fn one<'e, 'c: 'e, T: DeserializeOwned>(self, executor: impl PgExecutor<'c> + 'e) -> T
    where
        'q: 'e,
    {
        let name = self.name.clone();
        self.optional(executor)
            .await
            .unwrap_or_else(|| panic!("{name} matched no row"))
    }
}

/// Runs `statement` as the components run it (`execute`): bind, then
/// `.execute(..)` answers the affected-row count.
pub fn write<'q>(statement: &Write) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(statement.sql)
}

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

/// [`events::INSERT_EVENTS`] under the new processing id `processing_id`: the number of
/// rows it affected (1 when new, 0 for a repeat).
pub async fn try_insert_event_as(
    executor: impl PgExecutor<'_>,
    processing_id: Uuid,
    conversation_id: &str,
    user_id: &str,
    payload: &str,
) -> Result<u64, sqlx::Error> {
    let payload: serde_json::Value = serde_json::from_str(payload).expect("a JSON payload");
    insert_events(
        executor,
        &[serde_json::json!({
            "processing_id": processing_id,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "payload": payload,
        })],
    )
    .await
}

/// [`events::INSERT_EVENTS`] of a batch as `store::record_events` binds it: one JSON
/// array of `{processing_id, conversation_id, user_id, payload}` objects; the number
/// of events inserted.
pub async fn insert_events(
    executor: impl PgExecutor<'_>,
    rows: &[serde_json::Value],
) -> Result<u64, sqlx::Error> {
    Ok(write(&events::INSERT_EVENTS)
        .bind(serde_json::Value::from(rows.to_vec()).to_string())
        .execute(executor)
        .await?
        .rows_affected())
}

/// [`events::INSERT_EVENTS`] of one event as `store::record_event` runs it, with a processing id
/// generated here: that id when the event is new, `None` for a repeat.
pub async fn insert_event(
    executor: impl PgExecutor<'_>,
    conversation_id: &str,
    user_id: &str,
    payload: &str,
) -> Option<Uuid> {
    let processing_id = Uuid::new_v4();
    let affected = try_insert_event_as(executor, processing_id, conversation_id, user_id, payload)
        .await
        .unwrap();
    match affected {
        1 => Some(processing_id),
        0 => None,
        n => panic!("INSERT_EVENTS affected {n} rows"),
    }
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

/// A row of [`events::CLAIM_DUE_EVENTS`].
#[derive(Debug, PartialEq, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    pub processing_id: Uuid,
    pub user_id: String,
    pub payload: String,
    pub attempts: i32,
    pub trace_id: Option<String>,
    pub now: NaiveDateTime,
}

/// [`events::CLAIM_DUE_EVENTS`] of at most `limit` events, on a connection inside a
/// transaction.
pub async fn claim_up_to(executor: impl PgExecutor<'_>, limit: i64) -> Vec<Claimed> {
    read(&events::CLAIM_DUE_EVENTS)
        .bind(limit)
        .rows(executor)
        .await
}

/// [`events::CLAIM_DUE_EVENTS`] of one event, on a connection inside a transaction.
pub async fn claim(executor: impl PgExecutor<'_>) -> Option<Claimed> {
    read(&events::CLAIM_DUE_EVENTS)
        .bind(1_i64)
        .optional(executor)
        .await
}

/// A row of [`events::GET_EVENT`].
#[derive(Debug, PartialEq, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
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

/// [`events::GET_EVENT`]; `None` when the event does not exist.
pub async fn find_event(executor: impl PgExecutor<'_>, processing_id: Uuid) -> Option<EventRow> {
    read(&events::GET_EVENT)
        .bind(processing_id)
        .optional(executor)
        .await
}

/// [`events::GET_EVENT`]; panics when the event does not exist.
pub async fn get_event(executor: impl PgExecutor<'_>, processing_id: Uuid) -> EventRow {
    find_event(executor, processing_id)
        .await
        .unwrap_or_else(|| panic!("event {processing_id} exists"))
}

/// [`events::RECORD_FAILURE`], then (as RECORD_FAILURE returns nothing) the event's
/// `(status, attempts)` read back with [`events::GET_EVENT`] on the same connection;
/// `None` when the write matched no pending row.
pub async fn record_failure<'a>(
    conn: impl Acquire<'a, Database = Postgres>,
    processing_id: Uuid,
    error: &str,
    max_attempts: i32,
    delay_seconds: f64,
) -> Option<(String, i32)> {
    let mut conn = conn.acquire().await.unwrap();
    let affected = write(&events::RECORD_FAILURE)
        .bind(processing_id)
        .bind(error)
        .bind(max_attempts)
        .bind(delay_seconds)
        .execute(&mut *conn)
        .await
        .unwrap()
        .rows_affected();
    match affected {
        0 => None,
        1 => {
            let event = get_event(&mut *conn, processing_id).await;
            Some((event.status, event.attempts))
        }
        n => panic!("RECORD_FAILURE affected {n} rows"),
    }
}

/// Marks an event processed as the scorer does, by scoring it: [`friendship::APPLY_CHANGES`]
/// of an empty conversation change with its processing id (after
/// [`friendship::ENSURE_USERS`] of its user). Answers 1 when that made the event
/// `processed`, 0 when it did not: it was not pending, is unknown, or was scored
/// before (then the history's unique `processing_id` refuses the change, and inside a
/// transaction that error aborts it).
pub async fn mark_processed<'a>(
    conn: impl Acquire<'a, Database = Postgres>,
    processing_id: Uuid,
) -> u64 {
    let mut conn = conn.acquire().await.unwrap();
    let event: Option<(String, String)> =
        sqlx::query_as("SELECT user_id, status FROM conversation_events WHERE processing_id = $1")
            .bind(processing_id)
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
    let Some((user_id, status_before)) = event else {
        return 0;
    };
    ensure_user(&mut *conn, &user_id).await;
    let applied = apply_change(
        &mut *conn,
        &Change::conversation(&user_id, processing_id, 0.0, 0),
    )
    .await;
    if applied.is_err() {
        assert_eq!(sqlstate(applied), UNIQUE_VIOLATION, "APPLY_CHANGES");
        return 0;
    }
    let status_after = get_event(&mut *conn, processing_id).await.status;
    u64::from(status_before == "pending" && status_after == "processed")
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

/// A row of [`friendship::GET_STATUS`], decoded as the components decode it.
#[derive(Debug, Clone, PartialEq, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub user_id: String,
    pub friendship_score: f64,
    pub friendship_level: String,
    pub last_interaction_date: Option<NaiveDateTime>,
    pub streak_day: i32,
    pub total_turns: i64,
    /// JSON text inside the JSON row: a string, as `store::Status` decodes it.
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

/// A row of [`friendship::LOCK_USERS`]: the domain's type, which the scorer
/// decodes too.
pub use friendship_domain::Locked;

/// A change applied as `store::apply_change` applies it: the status it produced
/// ([`friendship::GET_STATUS`] after [`friendship::APPLY_CHANGES`]) and the level before
/// it ([`friendship::LOCK_USERS`] before).
#[derive(Debug)]
pub struct Changed {
    pub status: Status,
    pub previous_level: String,
}

/// The parameters of [`friendship::APPLY_CHANGES`]: the domain's type, which
/// the scorer and the service update bind too.
pub use friendship_domain::Change;

/// Builders of [`Change`]s for the tests.
pub trait ChangeExt: Sized {
    /// A service update of `score_change` points: no turns, streak or emotion, not an
    /// interaction; the default topic bound, uncapped.
    fn service(user_id: &str, score_change: f64) -> Self;
    /// A scored conversation of event `processing_id` (the default topic bound,
    /// uncapped: set `daily_score_cap` to cap it).
    fn conversation(user_id: &str, processing_id: Uuid, score_change: f64, turns: i64) -> Self;
    /// Adds a topic update.
    fn topic(self, name: &str, score_change: f64, turns: u64, last_date: DateTime<Utc>) -> Self;
}

impl ChangeExt for Change {
    fn service(user_id: &str, score_change: f64) -> Change {
        Change::service_update(
            user_id,
            score_change,
            BTreeMap::new(),
            friendship_domain::Limits::DEFAULT.max_topics_per_user,
        )
    }

    fn conversation(user_id: &str, processing_id: Uuid, score_change: f64, turns: i64) -> Change {
        Change {
            turns_increment: turns,
            processing_id: Some(processing_id),
            cause: Cause::Conversation,
            interaction: true,
            ..Change::service(user_id, score_change)
        }
    }

    fn topic(
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

/// [`friendship::ENSURE_USERS`] of one user: the number of rows it affected (1).
pub async fn ensure_user(executor: impl PgExecutor<'_>, user_id: &str) -> u64 {
    ensure_users(executor, &[user_id]).await
}

/// [`friendship::ENSURE_USERS`], bound as `store::lock_users` binds it (a JSON array
/// of ids): the number of rows it affected.
pub async fn ensure_users(executor: impl PgExecutor<'_>, user_ids: &[&str]) -> u64 {
    write(&friendship::ENSURE_USERS)
        .bind(serde_json::to_string(user_ids).unwrap())
        .execute(executor)
        .await
        .unwrap()
        .rows_affected()
}

/// [`friendship::LOCK_USERS`], bound as `store::lock_users` binds it: the rows of the
/// listed users that exist, locked until the transaction ends.
pub async fn try_lock_users(
    executor: impl PgExecutor<'_>,
    user_ids: &[&str],
) -> Result<Vec<Locked>, sqlx::Error> {
    read(&friendship::LOCK_USERS)
        .bind(serde_json::to_string(user_ids).unwrap())
        .try_rows(executor)
        .await
}

/// [`friendship::LOCK_USERS`] of one user: the user's row before a change, locked until
/// the transaction ends; `None` for an unknown user.
pub async fn try_lock_user(
    executor: impl PgExecutor<'_>,
    user_id: &str,
) -> Result<Option<Locked>, sqlx::Error> {
    let mut rows = try_lock_users(executor, &[user_id]).await?;
    assert!(
        rows.len() <= 1,
        "LOCK_USERS of one user matched {} rows",
        rows.len()
    );
    Ok(rows.pop())
}

/// As [`try_lock_user`]; panics on a database error.
pub async fn lock_user(executor: impl PgExecutor<'_>, user_id: &str) -> Option<Locked> {
    try_lock_user(executor, user_id).await.unwrap()
}

/// [`friendship::APPLY_CHANGES`] of one change, bound as `store::apply_changes` binds it:
/// the affected-row count `execute` answers.
pub async fn apply_change(
    executor: impl PgExecutor<'_>,
    change: &Change,
) -> Result<u64, sqlx::Error> {
    apply_changes(executor, std::slice::from_ref(change)).await
}

/// [`friendship::APPLY_CHANGES`] of several changes (at most one per user), bound as
/// `store::apply_changes` binds them: the affected-row count `execute` answers.
pub async fn apply_changes(
    executor: impl PgExecutor<'_>,
    changes: &[Change],
) -> Result<u64, sqlx::Error> {
    Ok(write(&friendship::APPLY_CHANGES)
        .bind(serde_json::to_string(changes).unwrap())
        .execute(executor)
        .await?
        .rows_affected())
}

/// A change to an existing user as the components make it, on one connection:
/// [`friendship::LOCK_USERS`] (the level before), [`friendship::APPLY_CHANGES`], then
/// [`friendship::GET_STATUS`]. Panics when the user does not exist.
pub async fn try_apply_on(
    conn: &mut PgConnection,
    change: &Change,
) -> Result<Changed, sqlx::Error> {
    let before = try_lock_user(&mut *conn, &change.user_id)
        .await?
        .unwrap_or_else(|| panic!("user {} exists", change.user_id));
    let transitions = apply_change(&mut *conn, change).await?;
    let status = status(&mut *conn, &change.user_id)
        .await
        .expect("the changed user has a status");
    assert_eq!(
        transitions == 1,
        status.friendship_level != before.friendship_level.as_str(),
        "APPLY_CHANGES affects one row exactly when the level moved"
    );
    Ok(Changed {
        status,
        previous_level: before.friendship_level.as_str().to_owned(),
    })
}

/// As [`try_apply_on`], on a pool, a connection or a transaction (which need not be
/// `Send`: spawned tasks use [`apply_on`]).
pub async fn try_apply<'a>(
    conn: impl Acquire<'a, Database = Postgres>,
    change: &Change,
) -> Result<Changed, sqlx::Error> {
    let mut conn = conn.acquire().await?;
    try_apply_on(&mut conn, change).await
}

/// As [`try_apply_on`]; panics on any failure.
pub async fn apply_on(conn: &mut PgConnection, change: &Change) -> Changed {
    try_apply_on(conn, change).await.unwrap()
}

/// As [`try_apply`]; panics on any failure.
pub async fn apply<'a>(conn: impl Acquire<'a, Database = Postgres>, change: &Change) -> Changed {
    try_apply(conn, change).await.unwrap()
}

/// [`friendship::GET_STATUS`].
pub async fn status(executor: impl PgExecutor<'_>, user_id: &str) -> Option<Status> {
    read(&friendship::GET_STATUS)
        .bind(user_id)
        .optional(executor)
        .await
}

/// A row of `friendship_score_history` (not read by any statement, so read directly).
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct HistoryLine {
    pub cause: String,
    pub processing_id: Option<Uuid>,
    pub score_change: f64,
    pub score_applied: f64,
    pub score_before: f64,
    pub score_after: f64,
}

/// The score history of a user, oldest first.
pub async fn history(executor: impl PgExecutor<'_>, user_id: &str) -> Vec<HistoryLine> {
    sqlx::query_as(
        "SELECT cause, processing_id, score_change::float8 AS score_change,
                score_applied::float8 AS score_applied, score_before::float8 AS score_before, score_after::float8 AS score_after
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
