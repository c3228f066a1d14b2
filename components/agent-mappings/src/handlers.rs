//! Parsing and answering of the agent-mapping routes.

use friendship_domain::{AgentFields, AgentType, GreetingTrigger, Level, Weight};
use friendship_edge::auth::Role;
use friendship_edge::cache::Cache;
use friendship_edge::db::Db;
use friendship_edge::http::{Limit, Offset, Page};
use friendship_edge::store::{self, Mapping, MappingFields, MappingFilter};
use friendship_edge::{log, ApiError, Ctx, Reply};
use serde::Deserialize;
use serde_json::json;

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

impl MappingInput {
    /// The domain's agent rules (which the database partly enforces too),
    /// told to the client first.
    fn validate(self) -> Result<MappingFields, ApiError> {
        AgentFields {
            agent_id: &self.agent_id,
            name: &self.agent_name,
            description: &self.agent_description,
            agent_type: self.agent_type,
            trigger: self.trigger,
            topic: self.topic.as_deref(),
        }
        .validate()?;
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

/// The query string of the list: optional filters and a page, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    friendship_level: Option<Level>,
    agent_type: Option<AgentType>,
    is_active: Option<bool>,
    #[serde(default)]
    limit: Limit,
    #[serde(default)]
    offset: Offset,
}

/// `GET /api/v1/agent-mappings?friendship_level=&agent_type=&is_active=&limit=&offset=`.
pub fn list_mappings(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let query: ListQuery = ctx.query()?;
    let filter = MappingFilter {
        level: query.friendship_level,
        agent_type: query.agent_type,
        is_active: query.is_active,
    };
    let db = Db::open()?;
    let page = Page::of(query.limit, query.offset);
    Reply::ok(&store::list_mappings(&db, &filter, page)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use friendship_edge::http::{decode_json, parse_query};
    use serde_json::Value;

    /// The error body a create or replace answers for `body`.
    fn refused(body: Value) -> Value {
        let error = decode_json::<MappingInput>(body.to_string().as_bytes())
            .and_then(MappingInput::validate)
            .err()
            .expect("refused");
        assert_eq!((error.status(), error.code()), (400, "validation_error"));
        error.body("rid", "2026-11-22T10:00:00Z")
    }

    fn talk() -> Value {
        json!({"friendship_level": "friend", "agent_type": "talk", "agent_id": "talk-1",
               "agent_name": "Talk", "weight": 1.0, "topic": "music"})
    }

    #[test]
    fn each_broken_agent_rule_is_a_400_naming_the_field() {
        assert!(decode_json::<MappingInput>(talk().to_string().as_bytes())
            .and_then(MappingInput::validate)
            .is_ok());
        for (field, value, message) in [
            (
                "agent_id",
                json!(" talk-1"),
                "agent_id must not start or end with whitespace",
            ),
            (
                "agent_id",
                json!(""),
                "agent_id must be between 1 and 128 characters",
            ),
            (
                "agent_name",
                json!("Talk "),
                "agent_name must not start or end with whitespace",
            ),
            (
                "agent_description",
                json!("a\u{0}b"),
                "agent_description must not contain the NUL character (U+0000)",
            ),
            (
                "topic",
                json!(" music"),
                "topic must not start or end with whitespace",
            ),
            ("topic", json!(null), "topic is required for talk agents"),
            (
                "trigger",
                json!("birthday"),
                "trigger is only allowed for greeting agents",
            ),
        ] {
            let mut body = talk();
            body[field] = value;
            let error = refused(body);
            assert_eq!(error["details"]["field"], field, "{error}");
            assert_eq!(error["message"], message, "{error}");
        }
    }

    #[test]
    fn the_list_query_takes_filters_and_a_page_only() {
        let query: ListQuery =
            parse_query("friendship_level=friend&agent_type=talk&is_active=true&limit=500")
                .unwrap();
        assert_eq!(query.friendship_level, Some(Level::Friend));
        assert_eq!(query.agent_type, Some(AgentType::Talk));
        assert_eq!(query.is_active, Some(true));
        assert_eq!((query.limit.get(), query.offset.get()), (500, 0));
        for (bad, field) in [
            ("limit=abc", "limit"),
            ("limit=0", "limit"),
            ("offset=-1", "offset"),
            ("is_active=maybe", "is_active"),
            ("friendship_level=x", "friendship_level"),
            ("agent_type=x", "agent_type"),
            ("%zz=1", "%zz"),
            ("unknown=1", "unknown"),
        ] {
            match parse_query::<ListQuery>(bad) {
                Err(ApiError::Validation { field: Some(f), .. }) => assert_eq!(f, field, "{bad}"),
                Err(other) => panic!("{bad}: {other:?}"),
                Ok(_) => panic!("{bad}: accepted"),
            }
        }
    }
}
