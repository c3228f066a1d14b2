//! The doorbell that wakes the scorer: a message on the events channel.
//!
//! Pub/sub is a doorbell, not the queue (docs/architecture.md, decision 1): a lost
//! notification delays an event until the next wake-up, it never loses it.
//! Whether a conversation end must publish one is decided in Postgres, with
//! its event ([`crate::store::record_event_and_mark_doorbell`]).

use friendship_domain::Doorbell;

use super::{open, unavailable};
use crate::config;
use crate::error::ApiError;

/// Publishes a doorbell on the events channel.
pub fn ring(doorbell: &Doorbell) -> Result<(), ApiError> {
    let channel = config::events_channel()?;
    open()?
        .publish(&channel, &doorbell.to_json())
        .map_err(unavailable)
}
