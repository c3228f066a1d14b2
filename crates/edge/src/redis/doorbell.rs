//! The doorbell that wakes the scorer: a message on the events channel.
//!
//! Pub/sub is a doorbell, not the queue (docs/architecture.md, decision 1): a lost
//! notification delays an event until the next wake-up, it never loses it.

use friendship_domain::Doorbell;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

use super::{open, unavailable};
use crate::config;
use crate::error::ApiError;

/// Set by the first [`ring_once`] of a quiet period, deleted by each
/// scorer wake-up as it starts ([`clear_rung`]): while it is there, a
/// wake-up that has not yet started will see every event recorded so far.
pub const RUNG_KEY: &str = "scorer:doorbell-rung";
/// How long a ring suppresses the next ones when no scorer deletes the key
/// (no scorer running): the bound on a doorbell skipped for nothing.
pub const RUNG_TTL_MS: i64 = 1_000;

/// Publishes a doorbell on the events channel.
pub fn ring(doorbell: &Doorbell) -> Result<(), ApiError> {
    publish(&open()?, doorbell)
}

fn publish(connection: &Connection, doorbell: &Doorbell) -> Result<(), ApiError> {
    let channel = config::events_channel()?;
    connection
        .publish(&channel, &doorbell.to_json())
        .map_err(unavailable)
}

/// Publishes a doorbell for a recorded event unless one rung since the last
/// wake-up started is still on its way (then that wake-up, which has not
/// started yet, will claim this event too); true when it published.
///
/// Under load this turns a doorbell per request, each waking every scorer,
/// into about one per wake-up. An event is never left without a coming
/// wake-up: a ring that finds the key set happened after the ring that set
/// it and before the wake-up that deletes it, and that wake-up claims after
/// deleting, so after this event committed.
pub fn ring_once(doorbell: &Doorbell) -> Result<bool, ApiError> {
    let connection = open()?;
    let set = connection
        .execute(
            "SET",
            &[
                RedisParameter::Binary(RUNG_KEY.as_bytes().to_vec()),
                RedisParameter::Binary(b"1".to_vec()),
                RedisParameter::Binary(b"NX".to_vec()),
                RedisParameter::Binary(b"PX".to_vec()),
                RedisParameter::Int64(RUNG_TTL_MS),
            ],
        )
        .map_err(unavailable)?;
    // `OK` when this ring set the key; nil when another had.
    if matches!(set.first(), Some(RedisResult::Nil) | None) {
        return Ok(false);
    }
    publish(&connection, doorbell).map(|()| true)
}

/// Called as a scorer wake-up starts, before it claims anything: events
/// recorded from now on need a doorbell of their own.
pub fn clear_rung(connection: &Connection) -> Result<(), ApiError> {
    connection
        .del(&[RUNG_KEY.to_owned()])
        .map(|_| ())
        .map_err(unavailable)
}
