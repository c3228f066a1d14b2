//! Parsing and answering of the conversation routes.

use friendship_domain::{ConversationEnd, Doorbell};
use friendship_edge::db::Db;
use friendship_edge::doorbell;
use friendship_edge::{log, store, ApiError, Ctx, Reply};
use serde_json::json;

/// `POST /api/v1/conversations/end`: records the event (idempotent on
/// `conversation_id`), answers 202, and rings the scorer's doorbell unless
/// one is already on its way ([`doorbell::record_and_mark`]). A
/// failed doorbell never fails the request: the event is already safe in
/// Postgres.
pub fn end_conversation(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let principal = ctx.authenticate()?;
    let event: ConversationEnd = ctx.json_body()?;
    ctx.user_id = Some(event.user_id.as_str().to_owned());
    principal.may_act_for(event.user_id.as_str())?;

    let db = Db::open()?;
    let (recorded, must_ring) =
        doorbell::record_and_mark(&db, &event, Some(ctx.trace_id.as_str()))?;
    if must_ring {
        if let Err(e) = doorbell::ring(&Doorbell::Recorded {
            processing_id: recorded.processing_id.to_string(),
        }) {
            log::event(
                "doorbell_failed",
                json!({ "request_id": ctx.request_id, "processing_id": recorded.processing_id, "error": e.to_string() }),
            );
        }
    }
    ctx.log_fields
        .insert("processing_id".into(), json!(recorded.processing_id));
    ctx.log_fields
        .insert("repeat".into(), json!(recorded.repeat));
    Reply::json(
        202,
        &json!({ "processing_id": recorded.processing_id, "status": "accepted" }),
    )
}

/// `GET /api/v1/conversations/{processing_id}`: an event's state; users see
/// their own events only.
pub fn get_conversation(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let not_found = || ApiError::NotFound("no conversation event with this processing_id".into());
    // A processing_id that cannot exist is a 404 before anything else.
    let processing_id =
        uuid::Uuid::parse_str(ctx.param("processing_id")).map_err(|_| not_found())?;
    let principal = ctx.authenticate()?;
    let db = Db::open()?;
    let event = store::get_event(&db, processing_id)?.ok_or_else(not_found)?;
    ctx.user_id = Some(event.user_id.clone());
    principal.may_act_for(&event.user_id)?;
    Reply::ok(&event)
}
