//! The agent catalogue: operators' CRUD, and what a suggestion is computed
//! from (the active agents of the user's level, with the user's status).

use chrono::{DateTime, Utc};
use friendship_domain::{Agent, AgentType, GreetingTrigger, Level, Weight};
use friendship_queries::{friendship, mappings};
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;

use crate::db::{self, Db, DbError, DbErrorKind};
use crate::http::Page;
use crate::store::{paged, parsed, Paged, Status};

/// A mapping as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mapping {
    pub id: i64,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub friendship_level: Level,
    #[serde(deserialize_with = "parsed::deserialize")]
    pub agent_type: AgentType,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_description: String,
    pub weight: f64,
    pub is_active: bool,
    #[serde(rename(deserialize = "greeting_trigger"))]
    #[serde(deserialize_with = "parsed::option::deserialize")]
    pub trigger: Option<GreetingTrigger>,
    pub topic: Option<String>,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(deserialize_with = "db::utc::deserialize")]
    #[serde(serialize_with = "crate::http::serialize_rfc3339")]
    pub updated_at: DateTime<Utc>,
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

    fn key(&self) -> Vec<P> {
        self.params().into_iter().take(3).collect()
    }
}

/// Why a mapping could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("a mapping with this friendship_level, agent_type and agent_id already exists (inactive ones count too)")]
    Duplicate,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn duplicate(error: DbError) -> MappingError {
    match error.kind {
        DbErrorKind::UniqueViolation => MappingError::Duplicate,
        _ => MappingError::Db(error),
    }
}

/// Filters of the mapping list.
#[derive(Default)]
pub struct MappingFilter {
    pub level: Option<Level>,
    pub agent_type: Option<AgentType>,
    pub is_active: Option<bool>,
}

/// A page of the mappings that pass `filter`.
pub fn list_mappings(
    db: &Db,
    filter: &MappingFilter,
    page: Page,
) -> Result<Paged<Mapping>, DbError> {
    let filters = vec![
        db::text_or_null(filter.level.map(|l| l.as_str())),
        db::text_or_null(filter.agent_type.map(|t| t.as_str())),
        filter.is_active.map(P::Boolean).unwrap_or(P::DbNull),
    ];
    paged(db, &mappings::COUNT, &mappings::LIST, filters, page)
}

pub fn get_mapping(db: &Db, id: i64) -> Result<Option<Mapping>, DbError> {
    db.read_one(&mappings::GET, &[P::Int64(id)])
}

pub fn insert_mapping(db: &Db, fields: &MappingFields) -> Result<Mapping, MappingError> {
    db.transaction(|db| {
        db.write(&mappings::INSERT, &fields.params())
            .map_err(duplicate)?;
        db.read_one(&mappings::GET_BY_KEY, &fields.key())?
            .ok_or_else(|| DbError::decoding("an inserted mapping is not there".into()).into())
    })
}

/// Replaces a mapping's fields; None when the id is unknown.
pub fn replace_mapping(
    db: &Db,
    id: i64,
    fields: &MappingFields,
) -> Result<Option<Mapping>, MappingError> {
    let mut params = fields.params();
    params.push(P::Int64(id));
    db.transaction(|db| {
        if db.write(&mappings::REPLACE, &params).map_err(duplicate)? == 0 {
            return Ok(None);
        }
        Ok(get_mapping(db, id)?)
    })
}

/// Soft-deletes a mapping; None when the id is unknown.
pub fn deactivate_mapping(db: &Db, id: i64) -> Result<Option<Mapping>, DbError> {
    db.transaction(|db| {
        if db.write(&mappings::DEACTIVATE, &[P::Int64(id)])? == 0 {
            return Ok(None);
        }
        get_mapping(db, id)
    })
}

pub fn catalogue_version(db: &Db) -> Result<i64, DbError> {
    #[derive(Deserialize)]
    struct Version {
        version: i64,
    }
    Ok(db
        .read_single::<Version>(&mappings::CATALOGUE_VERSION, &[])?
        .version)
}

/// What a suggestion is computed from, read in one snapshot.
#[derive(Debug)]
pub struct SuggestionInputs {
    /// The catalogue version the agents belong to.
    pub catalogue_version: i64,
    /// The user's status; None for a user never seen (a stranger).
    pub status: Option<Status>,
    /// The active agents of the user's level.
    pub agents: Vec<Agent>,
}

/// The catalogue version, a user's status and the active agents of their
/// level (a stranger's when unknown): one round trip where three reads
/// would cost three, since Spin prepares every statement anew.
pub fn suggestion_inputs(db: &Db, user_id: &str) -> Result<SuggestionInputs, DbError> {
    #[derive(Deserialize)]
    struct Row {
        version: i64,
        status: Option<String>,
        agents: String,
    }
    #[derive(Deserialize)]
    struct AgentRow {
        id: i64,
        agent_id: String,
        agent_name: String,
        agent_description: String,
        #[serde(deserialize_with = "parsed::deserialize")]
        agent_type: AgentType,
        weight: f64,
        #[serde(deserialize_with = "parsed::option::deserialize")]
        greeting_trigger: Option<GreetingTrigger>,
        topic: Option<String>,
    }
    let row: Row = db.read_single(
        &friendship::SUGGESTION_INPUTS,
        &[P::Str(user_id.to_owned())],
    )?;
    let status = row
        .status
        .map(|json| serde_json::from_str::<Status>(&json))
        .transpose()
        .map_err(|e| DbError::decoding(format!("the status of the suggestion inputs: {e}")))?;
    let rows: Vec<AgentRow> = serde_json::from_str(&row.agents)
        .map_err(|e| DbError::decoding(format!("the agents of the suggestion inputs: {e}")))?;
    let agents = rows
        .into_iter()
        .map(|row| {
            Ok(Agent {
                mapping_id: row.id,
                agent_id: row.agent_id,
                name: row.agent_name,
                description: row.agent_description,
                agent_type: row.agent_type,
                weight: Weight::new(row.weight)
                    .map_err(|e| DbError::decoding(format!("stored weight: {e}")))?,
                trigger: row.greeting_trigger,
                topic: row.topic,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(SuggestionInputs {
        catalogue_version: row.version,
        status,
        agents,
    })
}
