//! Parsing and answering of the admin routes.

use friendship_domain::{Doorbell, EventStatus};
use friendship_edge::auth::Role;
use friendship_edge::db::Db;
use friendship_edge::doorbell;
use friendship_edge::http::{Limit, Offset, Page};
use friendship_edge::redis::{self, counters};
use friendship_edge::{config, log, store, ApiError, Ctx, Reply};
use serde_json::json;

/// `POST /api/v1/admin/events/redrive`: without a body (or with `{}`),
/// requeues every failed event and the pending events older than
/// `redrive_pending_after_seconds`; with `{"processing_ids": [...]}`, only
/// those of the listed events that are failed. Then wakes the scorer.
pub fn redrive_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let body = if ctx.body()?.is_empty() {
        RedriveBody::default()
    } else {
        ctx.json_body::<RedriveBody>()?
    };
    let db = Db::open()?;
    let requeued = match body.processing_ids {
        None => store::redrive(&db, config::number("redrive_pending_after_seconds")?)?,
        Some(ids) => {
            if ids.is_empty() || ids.len() > MAX_REDRIVE_IDS {
                return Err(ApiError::validation(
                    "processing_ids",
                    format!("processing_ids must hold 1 to {MAX_REDRIVE_IDS} ids"),
                ));
            }
            store::redrive_selected(&db, &ids)?
        }
    };
    if let Err(e) = doorbell::ring(&Doorbell::Tick) {
        log::event(
            "doorbell_failed",
            json!({ "request_id": ctx.request_id, "error": e.to_string() }),
        );
    }
    ctx.log_fields.insert("requeued".into(), json!(requeued));
    Reply::ok(&json!({ "requeued": requeued }))
}

/// The most events one selective redrive names.
const MAX_REDRIVE_IDS: usize = 1_000;

/// The redrive body: nothing (everything redrivable), or chosen events.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    #[serde(default)]
    processing_ids: Option<Vec<uuid::Uuid>>,
}

/// The statuses an operator lists.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum ListedStatus {
    /// The dead letters.
    #[default]
    Failed,
    /// Accepted and not yet scored (retries waiting included).
    Pending,
}

impl ListedStatus {
    fn as_str(self) -> &'static str {
        match self {
            ListedStatus::Failed => EventStatus::Failed,
            ListedStatus::Pending => EventStatus::Pending,
        }
        .as_str()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    status: ListedStatus,
    #[serde(default)]
    limit: Limit,
    #[serde(default)]
    offset: Offset,
}

/// `GET /api/v1/admin/events?status=failed|pending&limit=&offset=`: the
/// events of a status, newest first, with their attempts, last error and
/// times: the dead letters (the default) to inspect before a redrive.
pub fn list_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let query: EventsQuery = ctx.query()?;
    let db = Db::open()?;
    let page = Page::of(query.limit, query.offset);
    let events = store::list_events(&db, query.status.as_str(), page)?;
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        status: &'a str,
        #[serde(flatten)]
        events: store::Paged<store::ListedEvent>,
    }
    Reply::ok(&Answer {
        status: query.status.as_str(),
        events,
    })
}

/// `GET /api/v1/admin/rejected-messages?limit=&offset=`: Redis messages the
/// scorer could not accept, newest first.
pub fn list_rejected_messages(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.authenticate_as(&[Role::Admin])?;
    let page = ctx.page()?;
    let db = Db::open()?;
    Reply::ok(&store::list_rejected(&db, page)?)
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
