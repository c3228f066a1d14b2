//! Parsing and answering of the friendship routes.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use friendship_domain::{
    validate_score_change, Cursor, ExportCursor, PageSize, TopicName, TopicUpdate, UserId,
};
use friendship_edge::auth::Role;
use friendship_edge::cache;
use friendship_edge::db::Db;
use friendship_edge::{log, store, ApiError, Ctx, Reply};
use serde::{Deserialize, Serialize};
use serde_json::json;

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
    let status = store::status(&db, request.user_id.as_str())?
        .ok_or_else(|| unknown_user(&request.user_id))?;
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

/// An optional field that, when present, holds a value: `null` is refused
/// as the value's own type refuses it (a `cursor` of null is no cursor a page
/// gave, and passing a last page's null back must not restart the walk).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The 404 of a user the service holds nothing about.
fn unknown_user(user_id: &UserId) -> ApiError {
    ApiError::NotFound(format!(
        "no friendship status for user {}",
        user_id.as_str()
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryRequest {
    user_id: UserId,
    #[serde(default)]
    limit: PageSize<50, 100>,
    #[serde(default, deserialize_with = "present")]
    cursor: Option<Cursor>,
}

#[derive(Serialize)]
struct HistoryResponse {
    user_id: String,
    #[serde(flatten)]
    page: store::CursorPage<store::HistoryLine, Cursor>,
}

/// `POST /api/v1/friendship/history`: a user's score changes, newest first,
/// a page at a time (`next_cursor` asks for the next); 404 for a user never
/// scored or updated.
pub fn get_history(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate()?;
    let request: HistoryRequest = ctx.json_body()?;
    ctx.user_id = Some(request.user_id.as_str().to_owned());
    principal.may_act_for(request.user_id.as_str())?;
    let db = Db::open()?;
    let user_id = request.user_id.as_str();
    let page = store::history(&db, user_id, request.cursor, request.limit.get())?;
    // An empty page may be an unknown user: only then is the user looked up.
    if page.items.is_empty() && store::status(&db, user_id)?.is_none() {
        return Err(unknown_user(&request.user_id));
    }
    Reply::ok(&HistoryResponse {
        user_id: user_id.to_owned(),
        page,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    user_id: UserId,
    #[serde(default)]
    limit: PageSize<100, 100>,
    #[serde(default, deserialize_with = "present")]
    cursor: Option<ExportCursor>,
}

#[derive(Serialize)]
struct ExportResponse {
    user_id: String,
    status: Option<ExportedStatus>,
    #[serde(flatten)]
    page: store::ExportPage,
}

/// The status as the status route shows it, and what that route keeps to
/// itself: the last conversation's emotion.
#[derive(Serialize)]
struct ExportedStatus {
    #[serde(flatten)]
    status: store::Status,
    last_emotion: Option<friendship_domain::Emotion>,
}

/// `POST /api/v1/friendship/export` (the user, or an admin): everything the
/// service holds about one user, a bounded page at a time: the status on
/// every page, then the history, events (with payloads), level transitions
/// and rejected messages naming the user, walked in that order.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate_as(&[Role::User, Role::Admin])?;
    let request: ExportRequest = ctx.json_body()?;
    ctx.user_id = Some(request.user_id.as_str().to_owned());
    principal.may_act_for(request.user_id.as_str())?;
    let db = Db::open()?;
    let user_id = request.user_id.as_str();
    let status = store::status(&db, user_id)?.map(|status| ExportedStatus {
        last_emotion: status.last_emotion,
        status,
    });
    let cursor = request.cursor.unwrap_or(ExportCursor::START);
    let page = store::export(&db, user_id, cursor, request.limit.get())?;
    Reply::ok(&ExportResponse {
        user_id: user_id.to_owned(),
        status,
        page,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    user_id: UserId,
}

/// Rows one erasure batch removes, in one short transaction.
const ERASE_BATCH_ROWS: i32 = 1000;
/// How long one request keeps erasing before it answers 202.
const ERASE_BUDGET: Duration = Duration::from_secs(5);

/// `POST /api/v1/friendship/erase` (the user, or an admin): removes what the
/// service holds about the user in batches, keeping only each conversation's
/// idempotency key as a digest. 200 once nothing is left (again on a repeat,
/// or for a user never seen), 202 when the request's time ran out first: the
/// client asks again and the erasure goes on where it stopped.
pub fn erase(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate_as(&[Role::User, Role::Admin])?;
    let request: EraseRequest = ctx.json_body()?;
    let user_id = request.user_id.as_str();
    ctx.user_id = Some(user_id.to_owned());
    principal.may_act_for(user_id)?;
    let db = Db::open()?;
    let started = Instant::now();
    let mut batches = 0u32;
    let complete = loop {
        batches += 1;
        if store::erase_batch(&db, user_id, ERASE_BATCH_ROWS)? {
            break true;
        }
        if started.elapsed() >= ERASE_BUDGET {
            break false;
        }
    };
    // The cached candidates hold the user's id and topics: dropped on every
    // call, so none written by a suggestion during the erasure outlives it.
    cache::Cache::open().invalidate(user_id, "erased");
    log::event(
        "user_erased",
        json!({ "request_id": ctx.request_id, "complete": complete, "batches": batches }),
    );
    let mut reply = Reply::json(
        if complete { 200 } else { 202 },
        &json!({ "user_id": user_id, "complete": complete }),
    )?;
    if !complete {
        reply.headers.push(("retry-after", "0".to_owned()));
    }
    Ok(reply)
}
