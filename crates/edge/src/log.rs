//! Structured logs: one JSON line on stdout per request, per level transition,
//! per cache invalidation and per scorer outcome. Tokens and secrets are never
//! passed here.
//!
//! A line stays a line: a text field keeps its message chain but never a
//! backtrace (Spin appends one to host errors when it runs with
//! `RUST_BACKTRACE` set), and is cut at [`MAX_FIELD_CHARS`] characters.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// The longest text a log field keeps; the rest is replaced by a marker
/// that says how much was cut.
pub const MAX_FIELD_CHARS: usize = 2_000;

/// A text as a log field shows it: without a trailing backtrace, bounded.
fn bounded(text: &str) -> String {
    let text = match text.find("Stack backtrace:") {
        Some(at) => text[..at].trim_end(),
        None => text,
    };
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} more bytes)", &text[..cut], text.len() - cut),
    }
}

fn bound_strings(value: &mut Value) {
    match value {
        Value::String(text)
            if text.len() > MAX_FIELD_CHARS || text.contains("Stack backtrace:") =>
        {
            *text = bounded(text);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_strings),
        Value::Object(map) => map.values_mut().for_each(bound_strings),
        _ => {}
    }
}

fn emit(event: &str, mut fields: Map<String, Value>) {
    fields.values_mut().for_each(bound_strings);
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
    trace_id: &str,
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
        "trace_id": trace_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backtrace_is_dropped_and_the_message_chain_kept() {
        let text = "query failed: db error: ERROR: boom\n\nStack backtrace:\n   0: anyhow::error\n   1: spin";
        assert_eq!(bounded(text), "query failed: db error: ERROR: boom");
    }

    #[test]
    fn a_long_field_is_cut_with_a_marker() {
        let long = "é".repeat(MAX_FIELD_CHARS + 10);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_FIELD_CHARS)));
        assert!(cut.ends_with("… (20 more bytes)"), "{cut}");
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn nested_fields_are_bounded_too() {
        let mut value = json!({ "error": { "chain": ["x".repeat(5 * MAX_FIELD_CHARS)] }, "n": 1 });
        bound_strings(&mut value);
        assert!(value.to_string().len() < MAX_FIELD_CHARS + 100);
        assert_eq!(value["n"], 1);
    }
}
