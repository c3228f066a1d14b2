//! Retention: processed events, rejected messages and published level
//! changes (the outbox's rows) older than their window are deleted in
//! bounded batches, by scorer wake-ups that found nothing to score. A pruned event leaves its key in `pruned_conversations`
//! (user id and conversation id, the key; processing id, payload digest), which the
//! insert and the repeat lookup of [`crate::events`] consult, so a
//! conversation resent after its event was pruned is still a repeat or a
//! conflict and is never scored again.
//!
//! Every batch is selected `FOR UPDATE SKIP LOCKED` inside its own statement:
//! scorers pruning at once take disjoint batches, and none waits on another.
//!
//! Every statement that asks whether a conversation has a key asks it per
//! row with `OFFSET 0` in the subquery: the fence keeps it a lookup in the
//! key's primary key for each event at hand. Without it the planner may
//! turn it into a hash anti-join that reads every key (measured: a claim of
//! 100 events behind a backlog of 50,000, with a million keys, took 1 s
//! instead of 0.35 ms).

use crate::Write;

/// Deletes up to `$2` processed events whose `processed_at` is more than
/// `$1` days old, oldest first, and keeps each one's key (conversation id,
/// processing id, user id, the sha256 of its payload's jsonb text) in
/// `pruned_conversations`, in the same statement: an event is never gone
/// without its key. A key already there (see [`SETTLE_PRUNED_REPEATS`]) is
/// kept as it is: it names the conversation's first event.
///
/// `$1` days int4, `$2` how many at most int8. Affects one row per deleted
/// event.
pub const PRUNE_EVENTS: Write = crate::write!(
    "WITH batch AS (
    SELECT processing_id FROM conversation_events
    WHERE status = 'processed' AND processed_at < now() - make_interval(days => $1::int4)
    ORDER BY processed_at
    LIMIT $2::int8
    FOR UPDATE SKIP LOCKED
), kept AS (
    INSERT INTO pruned_conversations (conversation_id, processing_id, user_id, payload_digest)
    SELECT e.conversation_id, e.processing_id, e.user_id, sha256(convert_to(e.payload::text, 'UTF8'))
    FROM conversation_events e JOIN batch USING (processing_id)
    ON CONFLICT (user_id, conversation_id) DO NOTHING
)
DELETE FROM conversation_events e USING batch
WHERE e.processing_id = batch.processing_id"
);

/// Marks `processed`, without any effect, up to `$1` pending events whose
/// conversation already has a pruned key: a resend that was inserted while
/// its conversation's event was being pruned (`docs/invariants.md` tells
/// how that can happen, and why nothing else can insert such an event). The
/// scorer never claims them ([`crate::events::CLAIM_DUE_EVENTS`]), so they
/// are never counted; this gives them an end.
///
/// `$1` how many at most int8. Affects one row per settled event.
pub const SETTLE_PRUNED_REPEATS: Write = crate::write!(
    "WITH batch AS (
    SELECT c.processing_id FROM conversation_events c
    WHERE c.status = 'pending'
      AND EXISTS (
        SELECT 1 FROM pruned_conversations p
        WHERE p.user_id = c.user_id AND p.conversation_id = c.conversation_id OFFSET 0)
    LIMIT $1::int8
    FOR UPDATE SKIP LOCKED
)
UPDATE conversation_events e
SET status = 'processed', processed_at = now(), updated_at = now()
FROM batch
WHERE e.processing_id = batch.processing_id"
);

/// Deletes up to `$2` rejected messages received more than `$1` days ago,
/// oldest first.
///
/// `$1` days int4, `$2` how many at most int8. Affects one row per deleted
/// message.
pub const PRUNE_REJECTED: Write = crate::write!(
    "WITH batch AS (
    SELECT id FROM rejected_messages
    WHERE received_at < now() - make_interval(days => $1::int4)
    ORDER BY received_at
    LIMIT $2::int8
    FOR UPDATE SKIP LOCKED
)
DELETE FROM rejected_messages r USING batch
WHERE r.id = batch.id"
);

/// Deletes up to `$2` level changes of the outbox published more than `$1`
/// days ago, oldest publication first; an unpublished one is never deleted
/// (it waits for the relay, however old). The transitions stay.
///
/// `$1` days int4, `$2` how many at most int8. Affects one row per deleted
/// outbox row.
pub const PRUNE_PUBLISHED: Write = crate::write!(
    "WITH batch AS (
    SELECT transition_id FROM level_change_outbox
    WHERE published_at IS NOT NULL AND published_at < now() - make_interval(days => $1::int4)
    ORDER BY published_at
    LIMIT $2::int8
    FOR UPDATE SKIP LOCKED
)
DELETE FROM level_change_outbox o USING batch
WHERE o.transition_id = batch.transition_id"
);
