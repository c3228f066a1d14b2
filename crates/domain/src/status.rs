//! The status machine of a conversation-end event (`conversation_events.status`),
//! the one place its states, transitions and client-visible form are written.
//!
//! ```text
//!             ┌──── a failed attempt, attempts left ────┐
//!             ▼                                         │
//! (recorded) pending ──── scored, level kept ────► processed
//!             │  ▲ ╲                                    ▲
//!             │  │  ╲── scored, level moved ──► scored ─┘ (its user's cached
//!             │  │                                         candidates dropped)
//!             │  └── redrive ──┐
//!             └── last attempt, or a payload that never decodes ──► failed
//! ```
//!
//! The SQL spells these states as literals (`crates/queries`, the
//! migrations' `CHECK`); a native test (`crates/queries/tests/sql/status.rs`)
//! checks every such literal against [`EventStatus::ALL`] and the `CHECK`
//! against the whole set, so a state added here or there alone fails it.

use crate::error::string_enum;

string_enum! {
    /// Where a conversation-end event stands.
    pub enum EventStatus (field = "status") {
        /// Recorded and waiting to be scored (or retried).
        Pending => "pending",
        /// Its effect is committed and moved its user's level; it becomes
        /// `processed` once that user's cached candidates are dropped.
        Scored => "scored",
        /// Its effect is committed (and any cache consequence done).
        Processed => "processed",
        /// Dead letter: its last attempt failed, or its payload never decodes.
        Failed => "failed",
    }
}

impl EventStatus {
    /// The status a client (and an operator's list) is shown: `scored` is
    /// shown as `pending`, so a client that reads `processed` is never served
    /// candidates of its user's old level.
    pub fn client_visible(self) -> EventStatus {
        match self {
            EventStatus::Scored => EventStatus::Pending,
            other => other,
        }
    }

    /// Whether the machine allows going from `self` to `to` (redrive
    /// included).
    pub fn can_become(self, to: EventStatus) -> bool {
        use EventStatus::*;
        matches!(
            (self, to),
            (Pending, Scored | Processed | Failed) | (Scored, Processed) | (Failed, Pending)
        )
    }

    /// The states whose effect is committed.
    pub fn is_done(self) -> bool {
        matches!(self, EventStatus::Scored | EventStatus::Processed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_scored_as_pending_and_nothing_else_changes() {
        for status in EventStatus::ALL {
            let shown = status.client_visible();
            assert_ne!(shown, EventStatus::Scored);
            if *status != EventStatus::Scored {
                assert_eq!(shown, *status);
            }
        }
    }

    #[test]
    fn only_pending_is_scored_and_only_failed_is_redriven() {
        use EventStatus::*;
        assert!(Pending.can_become(Processed) && Pending.can_become(Scored));
        assert!(Scored.can_become(Processed) && !Scored.can_become(Failed));
        assert!(Failed.can_become(Pending) && !Processed.can_become(Pending));
        assert!(EventStatus::ALL.iter().all(|s| !s.can_become(*s)));
    }
}
