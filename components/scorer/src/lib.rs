//! The scorer: a Redis-trigger component on the conversation-events channel.
//!
//! A message is only a doorbell; on each one the scorer claims the due events
//! from Postgres in batches and scores them (see `friendship_edge::scorer`). An error is
//! returned, and so logged by Spin, when the doorbell does not decode or the
//! database fails; no event depends on the message that woke the scorer.

use bytes::Bytes;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    friendship_edge::scorer::handle_message(&message).map_err(|e| anyhow::anyhow!("scorer: {e}"))
}
