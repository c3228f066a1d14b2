//! `GET /metrics`: the Prometheus scrape, behind the `metrics_token` bearer
//! token; the error-schema 404 of unknown paths while that token is unset.

use friendship_edge::db::Db;
use friendship_edge::metrics::{self, CacheCounts, RequestCounts};
use friendship_edge::redis::{counters, requests};
use friendship_edge::{config, log, probe, redis, store, ApiError, Ctx, Reply};
use spin_sdk::http::Method;

/// `GET /metrics`: 404 while `metrics_token` is empty (for every method),
/// 405 for another method, 401 without that token, else the exposition. Postgres is needed (503 otherwise); Redis
/// only for the cache and request counters, which are left out when it does not answer.
pub fn scrape(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let token = config::text("metrics_token")?;
    if token.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no route for {}",
            ctx.request.path()
        )));
    }
    if *ctx.request.method() != Method::Get {
        return Err(ApiError::MethodNotAllowed {
            method: ctx.request.method().to_string(),
            allow: vec!["GET"],
        });
    }
    metrics::authorize_scrape(ctx.authorization()?, &token)?;
    let db = Db::open()?;
    let mut snapshot = store::metrics_snapshot(&db)?;
    (snapshot.cache, snapshot.requests) = match redis_counts() {
        Ok((cache, requests)) => (Some(cache), Some(requests)),
        Err(error) => {
            log::event(
                "metrics_cache_unavailable",
                serde_json::json!({ "error": error }),
            );
            (None, None)
        }
    };
    Ok(Reply {
        status: 200,
        body: metrics::render(&snapshot).into_bytes(),
        content_type: metrics::CONTENT_TYPE,
        headers: Vec::new(),
    })
}

/// The cache and request counters, after a bounded probe: Spin puts no
/// timeout on Redis calls, and a frozen Redis must not hang the scrape.
fn redis_counts() -> Result<(CacheCounts, RequestCounts), String> {
    probe::redis(&config::text("redis_host").map_err(|e| e.to_string())?)?;
    let redis = redis::open().map_err(|e| e.to_string())?;
    let read = |key| counters::read(&redis, key).map_err(|e| e.to_string());
    let cache = CacheCounts {
        hits: read(counters::HITS_KEY)?,
        misses: read(counters::MISSES_KEY)?,
    };
    let requests = requests::read(&redis).map_err(|e| e.to_string())?;
    Ok((cache, requests))
}
