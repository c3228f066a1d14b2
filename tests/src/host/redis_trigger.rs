//! The Redis trigger: `SUBSCRIBE` and hand each message to a fresh instance
//! of the component's `fermyon:spin/inbound-redis.handle-message`.
//!
//! As Spin v3.6 does (`crates/trigger-redis/src/lib.rs`):
//! - addresses and channels are templates over application variables; the
//!   trigger's `address` overrides `[application.trigger.redis] address`;
//! - one subscriber connection per address, subscribed to all its channels;
//! - messages of one address are handled one at a time, in order; a message
//!   goes to every component subscribed to its channel (concurrently);
//! - delivery is at most once: a handler error (or trap) is logged at INFO
//!   level and the message is dropped, never retried;
//! - when the subscriber connection drops, the trigger ends with
//!   "disconnected from <address>", and Spin's process exits.
//!
//! Difference: [`Subscriber::connect`] subscribes before the App reports it
//! started, so no message published after `App::start` returns is missed
//! (with Spin the subscription starts a little after HTTP is serving).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use wasmtime::component::InstancePre;
use wasmtime::Engine;

use crate::host::bindings::exports::fermyon::spin::inbound_redis::GuestIndices;
use crate::host::runtime::{new_store, ComponentContext, InstanceState, SharedServices};

/// A component subscribed to a channel.
pub struct RedisComponent {
    /// Pre-linked instance.
    pub pre: InstancePre<InstanceState>,
    /// Where its `handle-message` export is.
    pub indices: GuestIndices,
    /// Its context.
    pub context: Arc<ComponentContext>,
}

/// All subscriptions on one Redis address.
pub struct Subscriber {
    /// The resolved address (`redis://…`).
    pub address: String,
    /// Channel → components (in manifest order).
    pub channels: BTreeMap<String, Vec<Arc<RedisComponent>>>,
    /// The engine the components were compiled with.
    pub engine: Engine,
    /// Shared services.
    pub shared: Arc<SharedServices>,
}

/// How a trigger ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerExit {
    /// The subscriber connection to this address dropped (Spin exits).
    Disconnected {
        /// The address (as configured, credentials included).
        address: String,
    },
    /// The App was shut down.
    Shutdown,
}

impl std::fmt::Display for TriggerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerExit::Disconnected { address } => write!(f, "disconnected from {address}"),
            TriggerExit::Shutdown => f.write_str("shut down"),
        }
    }
}

impl Subscriber {
    /// Connects and subscribes to every channel.
    pub async fn connect(&self) -> anyhow::Result<redis::aio::PubSub> {
        let client = redis::Client::open(self.address.as_str())
            .map_err(|e| anyhow::anyhow!("invalid Redis trigger address {}: {e}", self.address))?;
        let mut pubsub = client.get_async_pubsub().await.map_err(|e| {
            anyhow::anyhow!("Redis trigger failed to connect to {}: {e}", self.address)
        })?;
        for (channel, components) in &self.channels {
            pubsub.subscribe(channel).await.map_err(|e| {
                anyhow::anyhow!(
                    "Redis trigger failed to subscribe to channel {channel:?} on {}: {e}",
                    self.address
                )
            })?;
            let ids: Vec<_> = components.iter().map(|c| c.context.id.as_str()).collect();
            tracing::info!("subscribed {}/{channel}: [{}]", self.address, ids.join(","));
        }
        Ok(pubsub)
    }

    /// Handles messages until the connection drops.
    pub async fn run(self: Arc<Self>, mut pubsub: redis::aio::PubSub) -> TriggerExit {
        {
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                self.handle_message(&msg).await;
            }
        }
        tracing::error!("Redis trigger: disconnected from {}", self.address);
        TriggerExit::Disconnected {
            address: self.address.clone(),
        }
    }

    async fn handle_message(&self, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let Some(components) = self.channels.get(channel) else {
            tracing::error!("message from unexpected channel {channel:?}");
            return;
        };
        let payload = msg.get_payload_bytes().to_vec();
        let runs = components.iter().map(|c| {
            let payload = payload.clone();
            async move {
                if let Err(err) = self.dispatch(c, payload).await {
                    tracing::info!("Component {} handler failed: {err:#}", c.context.id);
                }
            }
        });
        futures::future::join_all(runs).await;
    }

    async fn dispatch(&self, component: &RedisComponent, payload: Vec<u8>) -> anyhow::Result<()> {
        let mut store = new_store(&self.engine, &component.context, &self.shared);
        let instance = component.pre.instantiate_async(&mut store).await?;
        let guest = component.indices.load(&mut store, &instance)?;
        guest
            .call_handle_message(&mut store, &payload)
            .await?
            .map_err(|e| anyhow::anyhow!("Redis handler returned an error ({e:?})"))
    }
}

/// `fermyon:spin/redis-types` only defines types (used by `inbound-redis`).
impl crate::host::bindings::fermyon::spin::redis_types::Host for InstanceState {}
