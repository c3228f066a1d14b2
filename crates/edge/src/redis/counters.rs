//! The cache counters: suggestions served from the cache (hits) and from
//! Postgres (misses), kept in Redis since they were last reset.

use spin_sdk::redis::{Connection, RedisParameter};

use super::{open, unavailable};
use crate::error::ApiError;

/// Redis keys of the cache counters.
pub const HITS_KEY: &str = "stats:cache:hits";
pub const MISSES_KEY: &str = "stats:cache:misses";

/// Adds `by` to a counter.
pub fn count(key: &str, by: u32) -> Result<(), ApiError> {
    open()?
        .execute(
            "INCRBY",
            &[
                RedisParameter::Binary(key.as_bytes().to_vec()),
                RedisParameter::Int64(i64::from(by)),
            ],
        )
        .map(|_| ())
        .map_err(unavailable)
}

/// Reads a counter (0 when never counted).
pub fn read(connection: &Connection, key: &str) -> Result<i64, ApiError> {
    match connection.get(key).map_err(unavailable)? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::Internal(format!("counter {key} holds a non-number"))),
    }
}
