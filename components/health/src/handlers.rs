//! The health probes and the OpenAPI document.

use std::time::Instant;

use friendship_edge::db::Db;
use friendship_edge::http::rfc3339;
use friendship_edge::{config, probe, redis, store, ApiError, Ctx, Reply};

use serde_json::{json, Value};
use spin_sdk::key_value::Store;
use spin_sdk::redis::{RedisParameter, RedisResult};

/// The OpenAPI document of the HTTP contract, kept in the repository root.
const OPENAPI: &str = include_str!("../../../openapi.json");

/// Runs one probe and reports it as a `ComponentHealth` of openapi.json.
fn probe(check: impl FnOnce() -> Result<(), String>) -> (bool, Value) {
    let started = Instant::now();
    let result = check();
    let latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    match result {
        Ok(()) => (
            true,
            json!({ "status": "up", "latency_ms": latency_ms, "error": null }),
        ),
        Err(error) => (
            false,
            json!({ "status": "down", "latency_ms": latency_ms, "error": error }),
        ),
    }
}

fn database() -> Result<(), String> {
    probe::postgres(&config::text("db_host").map_err(|e| e.to_string())?)?;
    let db = Db::open().map_err(|e| ApiError::from(e).public_message())?;
    store::probe(&db).map_err(|e| ApiError::from(e).public_message())
}

/// The key-value store. Its server is in the runtime config, which a
/// component cannot read: the `kv_host` variable names it (scripts/run.sh
/// derives both from one URL), and its bounded PING keeps this check within
/// the time budget when that server hangs, where the key-value call itself
/// would wait for ever.
fn cache() -> Result<(), String> {
    probe::redis(&config::text("kv_host").map_err(|e| e.to_string())?)?;
    let store = Store::open_default().map_err(|e| format!("key-value store unavailable: {e}"))?;
    store
        .exists("health:probe")
        .map(|_| ())
        .map_err(|e| format!("key-value store failed: {e}"))
}

/// The Redis of the channel, the events stream and the counters: it answers,
/// and its eviction policy keeps the stream (an `allkeys-*` policy may evict
/// pending entries, which would lose events). A Redis that refuses `CONFIG`
/// (some managed services) is not held against it.
fn queue() -> Result<(), String> {
    probe::redis(&config::text("redis_host").map_err(|e| e.to_string())?)?;
    let redis = redis::open().map_err(|e| e.public_message())?;
    match redis.execute("PING", &[]) {
        Ok(results)
            if results
                .iter()
                .any(|r| matches!(r, RedisResult::Status(s) if s == "PONG")) => {}
        Ok(other) => return Err(format!("unexpected answer to PING: {other:?}")),
        Err(e) => return Err(format!("redis failed: {e}")),
    }
    let policy = redis.execute(
        "CONFIG",
        &[
            RedisParameter::Binary(b"GET".to_vec()),
            RedisParameter::Binary(b"maxmemory-policy".to_vec()),
        ],
    );
    // The flattened answer: the name, then the value.
    if let Ok(answer) = policy {
        if let Some(RedisResult::Binary(value)) = answer.get(1) {
            let value = String::from_utf8_lossy(value);
            if value.starts_with("allkeys-") {
                return Err(format!(
                    "maxmemory-policy {value} can evict pending stream entries; use noeviction or a volatile-* policy"
                ));
            }
        }
    }
    Ok(())
}

/// `GET /health`: 200 when every dependency answers, 503 otherwise.
pub fn health(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let (db_up, database) = probe(database);
    let (cache_up, cache) = probe(cache);
    let (queue_up, queue) = probe(queue);
    let healthy = db_up && cache_up && queue_up;
    let components = json!({ "database": database, "cache": cache, "queue": queue });
    if healthy {
        return Reply::ok(&json!({ "status": "healthy", "components": components }));
    }
    // A 503 is also an error: it carries the error schema and Retry-After
    // beside the health fields, so every non-2xx reads the same way.
    let down: Vec<&str> = [
        ("database", db_up),
        ("cache", cache_up),
        ("queue", queue_up),
    ]
    .iter()
    .filter(|(_, up)| !up)
    .map(|(name, _)| *name)
    .collect();
    let error = ApiError::Unavailable {
        dependency: "service",
        detail: down.join(", "),
        retry_after: 5,
    };
    let mut body = error.body(&ctx.request_id, &rfc3339(ctx.now));
    body["message"] = json!(format!("unhealthy: {} down", down.join(", ")));
    body["details"] = json!({ "down": down });
    body["status"] = json!("unhealthy");
    body["components"] = components;
    let mut reply = Reply::json(503, &body)?;
    reply.headers = error.headers();
    Ok(reply)
}

/// `GET /openapi.json`.
pub fn openapi(_ctx: &mut Ctx) -> Result<Reply, ApiError> {
    Ok(Reply {
        status: 200,
        body: OPENAPI.as_bytes().to_vec(),
        content_type: "application/json",
        headers: Vec::new(),
    })
}
