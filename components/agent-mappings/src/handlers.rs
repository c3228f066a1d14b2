//! Parsing and answering of the agent-mapping routes.

use friendship_domain::{AgentType, GreetingTrigger, Level, Weight};
use friendship_edge::auth::Role;
use friendship_edge::cache::Cache;
use friendship_edge::db::Db;
use friendship_edge::store::{self, Mapping, MappingFields, MappingFilter};
use friendship_edge::{log, ApiError, Ctx, Reply};
use serde::Deserialize;
use serde_json::json;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

/// The body of a create or a replace.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingInput {
    friendship_level: Level,
    agent_type: AgentType,
    agent_id: String,
    agent_name: String,
    #[serde(default)]
    agent_description: String,
    weight: Weight,
    #[serde(default = "active_by_default")]
    is_active: bool,
    #[serde(default)]
    trigger: Option<GreetingTrigger>,
    #[serde(default)]
    topic: Option<String>,
}

fn active_by_default() -> bool {
    true
}

fn check_length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::validation(
            field,
            format!("{field} must be between {min} and {max} characters"),
        ));
    }
    Ok(())
}

/// Identifiers and names are compared as written, so a padded one is a typo.
fn check_trimmed(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim() != value {
        return Err(ApiError::validation(
            field,
            format!("{field} must not start or end with whitespace"),
        ));
    }
    Ok(())
}

impl MappingInput {
    /// The rules the database would also enforce, told to the client first.
    fn validate(self) -> Result<MappingFields, ApiError> {
        check_length("agent_id", &self.agent_id, 1, 128)?;
        check_trimmed("agent_id", &self.agent_id)?;
        check_length("agent_name", &self.agent_name, 1, 200)?;
        check_trimmed("agent_name", &self.agent_name)?;
        check_length("agent_description", &self.agent_description, 0, 2000)?;
        if self.trigger.is_some() && self.agent_type != AgentType::Greeting {
            return Err(ApiError::validation(
                "trigger",
                "only greeting agents have a trigger",
            ));
        }
        match (&self.topic, self.agent_type) {
            (Some(topic), AgentType::Talk) => {
                check_length("topic", topic, 1, 64)?;
                check_trimmed("topic", topic)?;
            }
            (None, AgentType::Talk) => {
                return Err(ApiError::validation(
                    "topic",
                    "talk agents must name the topic they cover",
                ))
            }
            (Some(_), _) => {
                return Err(ApiError::validation(
                    "topic",
                    "only talk agents have a topic",
                ))
            }
            (None, _) => {}
        }
        Ok(MappingFields {
            friendship_level: self.friendship_level,
            agent_type: self.agent_type,
            agent_id: self.agent_id,
            agent_name: self.agent_name,
            agent_description: self.agent_description,
            weight: self.weight,
            is_active: self.is_active,
            trigger: self.trigger,
            topic: self.topic,
        })
    }
}

/// The mapping id of the path; one that cannot exist is a 404 before anything else.
fn mapping_id(ctx: &Ctx) -> Result<i64, ApiError> {
    ctx.param("id")
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound("no agent mapping with this id".into()))
}

fn not_found() -> ApiError {
    ApiError::NotFound("no agent mapping with this id".into())
}

/// Publishes the new catalogue version to the cache after a change.
fn catalogue_changed(db: &Db, ctx: &mut Ctx, mapping: &Mapping) -> Result<(), ApiError> {
    let version = store::catalogue_version(db)?;
    let published = Cache::open().set_catalogue_version(version);
    if !published {
        log::event(
            "catalogue_version_not_published",
            json!({ "request_id": ctx.request_id, "version": version }),
        );
    }
    ctx.log_fields
        .insert("mapping_id".into(), json!(mapping.id));
    ctx.log_fields
        .insert("catalogue_version".into(), json!(version));
    Ok(())
}

fn parse_query<T: std::str::FromStr>(field: &str, value: &str, what: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::validation(field, format!("{field} must be {what}")))
}

/// `GET /api/v1/agent-mappings?friendship_level=&agent_type=&is_active=&limit=&offset=`.
pub fn list_mappings(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let mut filter = MappingFilter::default();
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0i64);
    for (key, value) in ctx.query() {
        match key.as_str() {
            "friendship_level" => {
                filter.level = Some(parse_query(
                    &key,
                    &value,
                    "stranger, acquaintance or friend",
                )?)
            }
            "agent_type" => {
                filter.agent_type = Some(parse_query(&key, &value, "greeting, talk or game")?)
            }
            "is_active" => filter.is_active = Some(parse_query(&key, &value, "true or false")?),
            "limit" => limit = parse_query(&key, &value, "an integer from 1 to 500")?,
            "offset" => offset = parse_query(&key, &value, "a non-negative integer")?,
            _ => {
                return Err(ApiError::validation(
                    key.clone(),
                    format!("unknown query parameter `{key}`"),
                ))
            }
        }
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            "limit must be an integer from 1 to 500",
        ));
    }
    if offset < 0 {
        return Err(ApiError::validation(
            "offset",
            "offset must be a non-negative integer",
        ));
    }
    let db = Db::open()?;
    let (items, total) = store::list_mappings(&db, &filter, limit, offset)?;
    Reply::ok(&json!({ "items": items, "total": total, "limit": limit, "offset": offset }))
}

/// `POST /api/v1/agent-mappings` → 201.
pub fn create_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let fields = ctx.json_body::<MappingInput>()?.validate()?;
    let db = Db::open()?;
    let mapping = store::insert_mapping(&db, &fields)?;
    catalogue_changed(&db, ctx, &mapping)?;
    Reply::json(201, &mapping)
}

/// `GET /api/v1/agent-mappings/{id}`.
pub fn get_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let id = mapping_id(ctx)?;
    ctx.authenticate_as(&[Role::Admin])?;
    let db = Db::open()?;
    Reply::ok(&store::get_mapping(&db, id)?.ok_or_else(not_found)?)
}

/// `PUT /api/v1/agent-mappings/{id}`: replaces the mapping's fields.
pub fn replace_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let id = mapping_id(ctx)?;
    ctx.authenticate_as(&[Role::Admin])?;
    let fields = ctx.json_body::<MappingInput>()?.validate()?;
    let db = Db::open()?;
    let mapping = store::replace_mapping(&db, id, &fields)?.ok_or_else(not_found)?;
    catalogue_changed(&db, ctx, &mapping)?;
    Reply::ok(&mapping)
}

/// `DELETE /api/v1/agent-mappings/{id}`: soft delete; answers the mapping, now inactive.
pub fn deactivate_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let id = mapping_id(ctx)?;
    ctx.authenticate_as(&[Role::Admin])?;
    let db = Db::open()?;
    let mapping = store::deactivate_mapping(&db, id)?.ok_or_else(not_found)?;
    catalogue_changed(&db, ctx, &mapping)?;
    Reply::ok(&mapping)
}
