//! Parsing and answering of the admin routes.

use friendship_domain::Doorbell;
use friendship_edge::auth::Role;
use friendship_edge::db::Db;
use friendship_edge::redis::{self, counters, doorbell};
use friendship_edge::{config, log, store, ApiError, Ctx, Reply};
use serde_json::json;

/// `POST /api/v1/admin/events/redrive`: requeues failed events and pending
/// events older than `redrive_pending_after_seconds`, then wakes the scorer.
/// The body, when present, must be an empty JSON object.
pub fn redrive_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    if !ctx.request.body().is_empty() {
        ctx.json_body::<EmptyBody>()?;
    }
    let older_than: f64 = config::number("redrive_pending_after_seconds")?;
    let db = Db::open()?;
    let requeued = store::redrive(&db, older_than)?;
    if let Err(e) = doorbell::ring(&Doorbell::Tick) {
        log::event(
            "doorbell_failed",
            json!({ "request_id": ctx.request_id, "error": e.to_string() }),
        );
    }
    ctx.log_fields.insert("requeued".into(), json!(requeued));
    Reply::ok(&json!({ "requeued": requeued }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// `GET /api/v1/admin/rejected-messages?limit=&offset=`: Redis messages the
/// scorer could not accept, newest first.
pub fn list_rejected_messages(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let page = ctx.page()?;
    let db = Db::open()?;
    let (items, total) = store::list_rejected(&db, page.limit, page.offset)?;
    Reply::ok(
        &json!({ "items": items, "total": total, "limit": page.limit, "offset": page.offset }),
    )
}

/// `GET /api/v1/admin/cache/stats`.
pub fn cache_stats(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let redis = redis::open()?;
    let hits = counters::read(&redis, counters::HITS_KEY)?;
    let misses = counters::read(&redis, counters::MISSES_KEY)?;
    let total = hits + misses;
    let hit_rate = if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    };
    Reply::ok(&json!({ "hits": hits, "misses": misses, "hit_rate": hit_rate }))
}
