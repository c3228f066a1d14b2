//! The scorer: a Redis-trigger component on the conversation-events channel.
//!
//! A message is a doorbell, a tick, or an event a producer published: the
//! scorer records the event it carries, if any, and the new entries of the
//! events stream, then claims the due events from Postgres in batches and
//! scores them (see `friendship_edge::scorer`). A message that is neither
//! doorbell nor valid event is stored as rejected (`rejected_messages`) and
//! answered `Ok`, so it never loops. An error is returned, and so logged by
//! Spin, only when a wake-up ends early (the configuration or the database
//! failed); no event depends on the message that woke the scorer.

use bytes::Bytes;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    friendship_edge::scorer::handle_message(&message).map_err(|e| anyhow::anyhow!("scorer: {e}"))
}
