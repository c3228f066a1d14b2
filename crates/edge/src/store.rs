//! Storage: every read and write of the service's Postgres state, as typed
//! functions over the statements of `friendship-queries`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use friendship_domain::{
    Agent, AgentType, ConversationEnd, Emotion, GreetingTrigger, Level, TopicMetric, TopicUpdate,
    Weight,
};
use friendship_queries::{events, friendship, mappings};
use serde::Serialize;
use spin_sdk::pg4::ParameterValue as P;
use uuid::Uuid;

use crate::db::{self, Db, RowRef};
use crate::error::ApiError;

fn parse_column<T: std::str::FromStr>(row: &RowRef<'_>, column: &str) -> Result<T, ApiError> {
    let text: String = row.get(column)?;
    text.parse()
        .map_err(|_| ApiError::Internal(format!("unexpected value {text:?} in column `{column}`")))
}

fn parse_optional<T: std::str::FromStr>(
    row: &RowRef<'_>,
    column: &str,
) -> Result<Option<T>, ApiError> {
    match row.get::<Option<String>>(column)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::Internal(format!("unexpected value {text:?} in column `{column}`"))
        }),
    }
}

// ----- events ---------------------------------------------------------------

/// The answer to a conversation-end post.
pub struct Recorded {
    pub processing_id: Uuid,
    /// The conversation had been recorded before (same user and payload).
    pub repeat: bool,
}

/// Records an event durably, once per conversation id. A repeat with the same
/// user and payload answers the original id; anything else is a conflict.
pub fn record_event(db: &Db, event: &ConversationEnd) -> Result<Recorded, ApiError> {
    db.reset_if_stale()?;
    let payload = serde_json::to_string(&event.metadata)
        .map_err(|e| ApiError::Internal(format!("serialising an event: {e}")))?;
    let conversation_id = event.conversation_id.as_str().to_owned();
    let rows = db.query(
        events::INSERT_EVENT,
        &[
            P::Str(conversation_id.clone()),
            P::Str(event.user_id.as_str().to_owned()),
            P::Str(payload.clone()),
        ],
    )?;
    if let Some(row) = rows.first() {
        return Ok(Recorded {
            processing_id: db::uuid_of(&row, "processing_id")?,
            repeat: false,
        });
    }
    let rows = db.query(
        events::FIND_EVENT_BY_CONVERSATION,
        &[P::Str(conversation_id), P::Str(payload)],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::Internal("a conflicting conversation vanished".into()))?;
    let user_id: String = row.get("user_id")?;
    let same_payload: bool = row.get("same_payload")?;
    if user_id != event.user_id.as_str() || !same_payload {
        return Err(ApiError::Conflict(
            "this conversation_id was already recorded with a different user or payload".into(),
        ));
    }
    Ok(Recorded {
        processing_id: db::uuid_of(&row, "processing_id")?,
        repeat: true,
    })
}

/// An event as `GET /api/v1/conversations/{processing_id}` shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub processing_id: Uuid,
    pub conversation_id: String,
    pub user_id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub accepted_at: String,
    pub processed_at: Option<String>,
}

pub fn get_event(db: &Db, processing_id: Uuid) -> Result<Option<EventView>, ApiError> {
    let rows = db.query(events::GET_EVENT, &[db::uuid_param(processing_id)])?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(EventView {
        processing_id: db::uuid_of(&row, "processing_id")?,
        conversation_id: row.get("conversation_id")?,
        user_id: row.get("user_id")?,
        status: row.get("status")?,
        attempts: row.get("attempts")?,
        last_error: row.get("last_error")?,
        accepted_at: crate::http::rfc3339(row.utc("accepted_at")?),
        processed_at: row.utc_opt("processed_at")?.map(crate::http::rfc3339),
    }))
}

/// Requeues failed events and pending ones older than `older_than_seconds`.
pub fn redrive(db: &Db, older_than_seconds: f64) -> Result<usize, ApiError> {
    db.reset_if_stale()?;
    Ok(db
        .query(events::REDRIVE, &[P::Floating64(older_than_seconds)])?
        .len())
}

// ----- friendship -----------------------------------------------------------

/// A user's friendship status, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub user_id: String,
    pub friendship_score: f64,
    pub friendship_level: Level,
    pub last_interaction_date: Option<String>,
    pub streak_day: i32,
    pub total_turns: i64,
    pub topic_metrics: BTreeMap<String, TopicMetric>,
    #[serde(skip)]
    pub last_interaction: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub last_emotion: Option<Emotion>,
}

fn status_of(row: &RowRef<'_>) -> Result<Status, ApiError> {
    let metrics: String = row.get("topic_metrics")?;
    let topic_metrics = serde_json::from_str(&metrics)
        .map_err(|e| ApiError::Internal(format!("stored topic_metrics do not parse: {e}")))?;
    let last_interaction = row.utc_opt("last_interaction_date")?;
    Ok(Status {
        user_id: row.get("user_id")?,
        friendship_score: row.get("friendship_score")?,
        friendship_level: parse_column(row, "friendship_level")?,
        last_interaction_date: last_interaction.map(crate::http::rfc3339),
        streak_day: row.get("streak_day")?,
        total_turns: row.get("total_turns")?,
        topic_metrics,
        last_interaction,
        last_emotion: parse_optional(row, "last_emotion")?,
    })
}

pub fn status(db: &Db, user_id: &str) -> Result<Option<Status>, ApiError> {
    let rows = db.query(friendship::GET_STATUS, &[P::Str(user_id.to_owned())])?;
    rows.first().map(|row| status_of(&row)).transpose()
}

/// The current level of a user (a stranger when unknown).
pub fn level(db: &Db, user_id: &str) -> Result<Level, ApiError> {
    let rows = db.query(friendship::GET_LEVEL, &[P::Str(user_id.to_owned())])?;
    match rows.first() {
        Some(row) => parse_column(&row, "friendship_level"),
        None => Ok(Level::Stranger),
    }
}

/// A change to apply to a user's status.
pub struct Change<'a> {
    pub user_id: &'a str,
    pub score_change: f64,
    pub turns_increment: i64,
    /// The new streak, or None to keep it.
    pub streak_day: Option<i32>,
    pub last_emotion: Option<Emotion>,
    pub topics: &'a BTreeMap<String, TopicUpdate>,
    /// The scored event, for conversations.
    pub processing_id: Option<Uuid>,
    pub cause: Cause,
}

/// Why a score changed; stored in the history.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Conversation,
    ServiceUpdate,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Conversation => "conversation",
            Cause::ServiceUpdate => "service_update",
        }
    }
}

/// The status after a change, and the level before it.
pub struct Changed {
    pub status: Status,
    pub previous_level: Level,
}

impl Changed {
    pub fn level_changed(&self) -> bool {
        self.previous_level != self.status.friendship_level
    }
}

/// Applies a change to an existing (locked or lockable) user row, in one
/// statement: increments in SQL, history and transition recorded with it.
pub fn apply_change(db: &Db, change: &Change<'_>) -> Result<Changed, ApiError> {
    let topics = serde_json::to_string(change.topics)
        .map_err(|e| ApiError::Internal(format!("serialising topic updates: {e}")))?;
    let rows = db.query(
        friendship::APPLY_CHANGE,
        &[
            P::Str(change.user_id.to_owned()),
            P::Floating64(change.score_change),
            P::Int64(change.turns_increment),
            change.streak_day.map(P::Int32).unwrap_or(P::DbNull),
            db::text_or_null(change.last_emotion.map(|e| e.as_str())),
            P::Str(topics),
            change
                .processing_id
                .map(db::uuid_param)
                .unwrap_or(P::DbNull),
            P::Str(change.cause.as_str().to_owned()),
            P::Boolean(matches!(change.cause, Cause::Conversation)),
        ],
    )?;
    let row = rows.first().ok_or_else(|| {
        ApiError::Internal(format!("no status row for {} to change", change.user_id))
    })?;
    Ok(Changed {
        status: status_of(&row)?,
        previous_level: parse_column(&row, "previous_level")?,
    })
}

/// Creates the user when new.
pub fn ensure_user(db: &Db, user_id: &str) -> Result<(), ApiError> {
    db.execute(friendship::ENSURE_USER, &[P::Str(user_id.to_owned())])
        .map(|_| ())
}

/// A service update: creates the user when new and applies the change, in one transaction.
pub fn apply_service_update(
    db: &Db,
    user_id: &str,
    score_change: f64,
    topics: &BTreeMap<String, TopicUpdate>,
) -> Result<Changed, ApiError> {
    db.transaction(|db| {
        ensure_user(db, user_id)?;
        apply_change(
            db,
            &Change {
                user_id,
                score_change,
                turns_increment: 0,
                streak_day: None,
                last_emotion: None,
                topics,
                processing_id: None,
                cause: Cause::ServiceUpdate,
            },
        )
    })
}

// ----- agent mappings -------------------------------------------------------

/// A mapping as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    pub id: i64,
    pub friendship_level: Level,
    pub agent_type: AgentType,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_description: String,
    pub weight: f64,
    pub is_active: bool,
    pub trigger: Option<GreetingTrigger>,
    pub topic: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn mapping_of(row: &RowRef<'_>) -> Result<Mapping, ApiError> {
    Ok(Mapping {
        id: row.get("id")?,
        friendship_level: parse_column(row, "friendship_level")?,
        agent_type: parse_column(row, "agent_type")?,
        agent_id: row.get("agent_id")?,
        agent_name: row.get("agent_name")?,
        agent_description: row.get("agent_description")?,
        weight: row.get("weight")?,
        is_active: row.get("is_active")?,
        trigger: parse_optional(row, "greeting_trigger")?,
        topic: row.get("topic")?,
        created_at: crate::http::rfc3339(row.utc("created_at")?),
        updated_at: crate::http::rfc3339(row.utc("updated_at")?),
    })
}

/// The fields an operator sets on a mapping (create and replace alike).
pub struct MappingFields {
    pub friendship_level: Level,
    pub agent_type: AgentType,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_description: String,
    pub weight: Weight,
    pub is_active: bool,
    pub trigger: Option<GreetingTrigger>,
    pub topic: Option<String>,
}

impl MappingFields {
    fn params(&self) -> Vec<P> {
        vec![
            P::Str(self.friendship_level.as_str().to_owned()),
            P::Str(self.agent_type.as_str().to_owned()),
            P::Str(self.agent_id.clone()),
            P::Str(self.agent_name.clone()),
            P::Str(self.agent_description.clone()),
            P::Floating64(self.weight.get()),
            P::Boolean(self.is_active),
            db::text_or_null(self.trigger.as_ref().map(|t| t.to_string()).as_deref()),
            db::text_or_null(self.topic.as_deref()),
        ]
    }
}

fn duplicate_mapping(error: ApiError) -> ApiError {
    match error {
        ApiError::Conflict(_) => ApiError::Conflict(
            "a mapping with this friendship_level, agent_type and agent_id already exists (inactive ones count too)".into(),
        ),
        other => other,
    }
}

/// Filters of the mapping list.
#[derive(Default)]
pub struct MappingFilter {
    pub level: Option<Level>,
    pub agent_type: Option<AgentType>,
    pub is_active: Option<bool>,
}

pub fn list_mappings(
    db: &Db,
    filter: &MappingFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Mapping>, i64), ApiError> {
    let filters = vec![
        db::text_or_null(filter.level.map(|l| l.as_str())),
        db::text_or_null(filter.agent_type.map(|t| t.as_str())),
        filter.is_active.map(P::Boolean).unwrap_or(P::DbNull),
    ];
    let total: i64 = db
        .query(mappings::COUNT, &filters)?
        .first()
        .ok_or_else(|| ApiError::Internal("count returned no row".into()))?
        .get("total")?;
    let mut params = filters;
    params.extend([P::Int64(limit), P::Int64(offset)]);
    let items = db
        .query(mappings::LIST, &params)?
        .iter()
        .map(|row| mapping_of(&row))
        .collect::<Result<_, _>>()?;
    Ok((items, total))
}

pub fn get_mapping(db: &Db, id: i64) -> Result<Option<Mapping>, ApiError> {
    db.query(mappings::GET, &[P::Int64(id)])?
        .first()
        .map(|row| mapping_of(&row))
        .transpose()
}

pub fn insert_mapping(db: &Db, fields: &MappingFields) -> Result<Mapping, ApiError> {
    db.reset_if_stale()?;
    let rows = db
        .query(mappings::INSERT, &fields.params())
        .map_err(duplicate_mapping)?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::Internal("insert returned no row".into()))?;
    mapping_of(&row)
}

pub fn replace_mapping(
    db: &Db,
    id: i64,
    fields: &MappingFields,
) -> Result<Option<Mapping>, ApiError> {
    db.reset_if_stale()?;
    let mut params = fields.params();
    params.push(P::Int64(id));
    let rows = db
        .query(mappings::REPLACE, &params)
        .map_err(duplicate_mapping)?;
    rows.first().map(|row| mapping_of(&row)).transpose()
}

pub fn deactivate_mapping(db: &Db, id: i64) -> Result<Option<Mapping>, ApiError> {
    db.reset_if_stale()?;
    db.query(mappings::DEACTIVATE, &[P::Int64(id)])?
        .first()
        .map(|row| mapping_of(&row))
        .transpose()
}

pub fn catalogue_version(db: &Db) -> Result<i64, ApiError> {
    db.query(mappings::CATALOGUE_VERSION, &[])?
        .first()
        .ok_or_else(|| ApiError::Internal("catalogue_version has no row".into()))?
        .get("version")
}

/// The active agents of a level and the catalogue version they belong to.
pub fn active_agents(db: &Db, level: Level) -> Result<(i64, Vec<Agent>), ApiError> {
    let rows = db.query(
        mappings::ACTIVE_AGENTS_OF_LEVEL,
        &[P::Str(level.as_str().to_owned())],
    )?;
    let mut version = None;
    let mut agents = Vec::new();
    for row in rows.iter() {
        version = Some(row.get::<i64>("version")?);
        let Some(mapping_id) = row.get::<Option<i64>>("id")? else {
            continue;
        };
        let weight: f64 = row.get("weight")?;
        agents.push(Agent {
            mapping_id,
            agent_id: row.get("agent_id")?,
            name: row.get("agent_name")?,
            description: row.get("agent_description")?,
            agent_type: parse_column(&row, "agent_type")?,
            weight: Weight::new(weight)
                .map_err(|e| ApiError::Internal(format!("stored weight: {e}")))?,
            trigger: parse_optional(&row, "greeting_trigger")?,
            topic: row.get("topic")?,
        });
    }
    let version =
        version.ok_or_else(|| ApiError::Internal("catalogue_version has no row".into()))?;
    Ok((version, agents))
}
