//! The outbox of level changes: [`crate::friendship::APPLY_CHANGES`] writes a
//! `level_change_outbox` row with each level transition, in the statement
//! that records it; scorer wake-ups relay unpublished rows to the Redis
//! Stream `level_changes_stream` and mark them published
//! ([`CLAIM_UNPUBLISHED`], then [`MARK_PUBLISHED`], in one transaction);
//! retention deletes published rows ([`crate::retention::PRUNE_PUBLISHED`]).
//! A row is marked only after its entry was added, so a Redis outage delays
//! a level change and never loses one (at least once: consumers deduplicate
//! on the transition's id).

use crate::{Read, Write};

/// Claims, inside the relay's transaction, up to `$1` unpublished level
/// changes, oldest transition first, `FOR UPDATE SKIP LOCKED` (scorers
/// relaying at once take disjoint rows, and none waits), with what the
/// stream's entry says of each.
///
/// `$1` how many at most int8. Rows: `id` int8 (the transition's id),
/// `user_id`, `from_level`, `to_level`, `score` float8, `cause`,
/// `processing_id` uuid? (the event, for a conversation), `at` timestamp
/// (when the transition committed, UTC); by `id`.
pub const CLAIM_UNPUBLISHED: Read = crate::read!(
    "SELECT t.id, t.user_id, t.from_level, t.to_level, t.score::float8 AS score, t.cause,
       t.processing_id, t.created_at AT TIME ZONE 'UTC' AS at
FROM level_change_outbox o
JOIN friendship_level_transitions t ON t.id = o.transition_id
WHERE o.published_at IS NULL
ORDER BY o.transition_id
LIMIT $1::int8
FOR UPDATE OF o SKIP LOCKED"
);

/// Marks level changes published, once their entries are on the stream.
///
/// `$1` a JSON array (text) of transition ids. Affects one row per change
/// that was unpublished.
pub const MARK_PUBLISHED: Write = crate::write!(
    "UPDATE level_change_outbox SET published_at = now()
WHERE transition_id IN (SELECT (jsonb_array_elements_text($1::text::jsonb))::int8)
  AND published_at IS NULL"
);
