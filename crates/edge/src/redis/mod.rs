//! Outbound Redis (`redis_url`), through Spin's `spin:redis`: the connection
//! ([`open`]) and the cache [`counters`] that go over it; the request
//! counters ([`requests`]), written over a plain socket with timeouts (the scorer's
//! doorbell is [`crate::doorbell`]). Spin opens a new connection for every `open`, so a request
//! opens one at most and only when it needs it.

pub mod counters;
pub mod requests;

use spin_sdk::redis::Connection;

use crate::config;
use crate::error::ApiError;

/// Opens the Redis connection named by `redis_url`.
pub fn open() -> Result<Connection, ApiError> {
    let url = config::redis_url()?;
    Connection::open(&url).map_err(unavailable)
}

/// A failed Redis call: the queue is unavailable, retry in a second.
pub(crate) fn unavailable(e: spin_sdk::redis::Error) -> ApiError {
    ApiError::Unavailable {
        dependency: "queue",
        detail: e.to_string(),
        retry_after: 1,
    }
}
