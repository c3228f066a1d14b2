//! Parsing and answering of the friendship routes.

use std::collections::BTreeMap;

use friendship_domain::{validate_score_change, TopicName, TopicUpdate, UserId};
use friendship_edge::auth::Role;
use friendship_edge::cache;
use friendship_edge::db::Db;
use friendship_edge::{store, ApiError, Ctx, Reply};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    user_id: UserId,
}

/// `POST /api/v1/friendship/status`.
pub fn get_status(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate()?;
    let request: StatusRequest = ctx.json_body()?;
    ctx.user_id = Some(request.user_id.as_str().to_owned());
    principal.may_act_for(request.user_id.as_str())?;
    let db = Db::open()?;
    let status = store::status(&db, request.user_id.as_str())?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no friendship status for user {}",
            request.user_id.as_str()
        ))
    })?;
    Reply::ok(&status)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    user_id: UserId,
    friendship_score_change: f64,
    #[serde(default)]
    topic_metrics_update: Option<BTreeMap<TopicName, TopicUpdate>>,
}

#[derive(Serialize)]
struct UpdateResponse {
    #[serde(flatten)]
    status: store::Status,
    previous_level: friendship_domain::Level,
    level_changed: bool,
}

/// `POST /api/v1/friendship/update` (service and admin): applies a score
/// change atomically, creating the user when new; invalidates the user's
/// candidates when the level changed.
pub fn update_friendship(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Service, Role::Admin])?;
    let request: UpdateRequest = ctx.json_body()?;
    let user_id = request.user_id.as_str().to_owned();
    ctx.user_id = Some(user_id.clone());
    validate_score_change(request.friendship_score_change, "friendship_score_change")?;
    let topics: BTreeMap<String, TopicUpdate> = request
        .topic_metrics_update
        .unwrap_or_default()
        .into_iter()
        .map(|(name, update)| (name.as_str().to_owned(), update))
        .collect();

    let max_topics = friendship_edge::config::max_topics_per_user()?;
    let db = Db::open()?;
    let changed = store::apply_service_update(
        &db,
        &user_id,
        request.friendship_score_change,
        &topics,
        max_topics,
    )?;
    cache::after_change(&changed, store::Cause::ServiceUpdate);
    let level_changed = changed.level_changed();
    Reply::ok(&UpdateResponse {
        status: changed.status,
        previous_level: changed.previous_level,
        level_changed,
    })
}
