//! Outbound Redis: the doorbell that wakes the scorer, and the cache counters.
//!
//! Pub/sub is a doorbell, not the queue (docs/architecture.md, decision 1): a lost
//! notification delays an event until the next wake-up, it never loses it.

use friendship_domain::Doorbell;
use spin_sdk::redis::{Connection, RedisParameter};

use crate::config;
use crate::error::ApiError;

/// Redis keys of the cache counters.
pub const HITS_KEY: &str = "stats:cache:hits";
pub const MISSES_KEY: &str = "stats:cache:misses";

fn connect() -> Result<Connection, ApiError> {
    let url = config::redis_url()?;
    Connection::open(&url).map_err(|e| ApiError::Unavailable {
        dependency: "queue",
        detail: e.to_string(),
        retry_after: 1,
    })
}

/// Publishes a doorbell on the events channel.
pub fn ring(doorbell: &Doorbell) -> Result<(), ApiError> {
    let channel = config::events_channel()?;
    let payload = doorbell.to_json();
    connect()?
        .publish(&channel, &payload)
        .map_err(|e| ApiError::Unavailable {
            dependency: "queue",
            detail: e.to_string(),
            retry_after: 1,
        })
}

/// Adds `by` to a counter.
pub fn count(key: &str, by: u32) -> Result<(), ApiError> {
    connect()?
        .execute(
            "INCRBY",
            &[
                RedisParameter::Binary(key.as_bytes().to_vec()),
                RedisParameter::Int64(i64::from(by)),
            ],
        )
        .map(|_| ())
        .map_err(|e| ApiError::Unavailable {
            dependency: "queue",
            detail: e.to_string(),
            retry_after: 1,
        })
}

/// Reads a counter (0 when never counted).
pub fn read_counter(connection: &Connection, key: &str) -> Result<i64, ApiError> {
    let value = connection.get(key).map_err(|e| ApiError::Unavailable {
        dependency: "queue",
        detail: e.to_string(),
        retry_after: 1,
    })?;
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::Internal(format!("counter {key} holds a non-number"))),
    }
}

/// Opens the Redis connection named by `redis_url`.
pub fn open() -> Result<Connection, ApiError> {
    connect()
}
