//! Structured logs: one JSON line on stdout per request, per level transition,
//! per cache invalidation and per scorer outcome. Tokens and secrets are never
//! passed here.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

fn emit(event: &str, mut fields: Map<String, Value>) {
    fields.insert(
        "ts".into(),
        Value::String(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    fields.insert("event".into(), Value::String(event.into()));
    println!("{}", Value::Object(fields));
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The line of a served request.
#[allow(clippy::too_many_arguments)]
pub fn request(
    request_id: &str,
    method: &str,
    route: &str,
    path: &str,
    status: u16,
    latency: Duration,
    user_id: Option<&str>,
    extra: Map<String, Value>,
) {
    let mut fields = object(json!({
        "request_id": request_id,
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "latency_ms": (latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "user_id": user_id,
    }));
    fields.extend(extra);
    emit("request", fields);
}

/// A user's level changed.
pub fn level_transition(user_id: &str, from: &str, to: &str, score: f64, cause: &str) {
    emit(
        "level_transition",
        object(
            json!({ "user_id": user_id, "from": from, "to": to, "score": score, "cause": cause }),
        ),
    );
}

/// Cached candidates were dropped.
pub fn cache_invalidation(user_id: &str, reason: &str, ok: bool) {
    emit(
        "cache_invalidation",
        object(json!({ "user_id": user_id, "reason": reason, "ok": ok })),
    );
}

/// Anything else worth a line: `event` names it, `fields` say the rest.
pub fn event(event: &str, fields: Value) {
    emit(event, object(fields));
}
