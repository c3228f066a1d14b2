//! The durable record of conversation-end events: accept, show, claim, finish, redrive.
//!
//! The states an event goes through, and what clients are shown of them, are
//! `friendship_domain::EventStatus` (the status machine); the SQL spells them
//! as literals, which a native test (`tests/sql/status.rs`) checks against it.
//! A scored event is marked by `friendship::APPLY_CHANGES`, in the statement
//! that applies its effect. Claiming uses
//! `FOR UPDATE SKIP LOCKED` inside the scorer's transaction, so two scorers never
//! work on the same event and a crashed scorer's claim vanishes with its
//! transaction.

use crate::{Read, Write};

/// Records events once per user and `conversation_id` (another user's
/// conversation of the same id is another conversation), each under the processing id
/// the caller generated: one statement (one round trip, one commit) for a
/// whole batch. Within the batch, `accepted_at` follows the array's order, so
/// events are scored in the order they arrived.
///
/// `$1` a JSON array (text) of objects `{processing_id, conversation_id,
/// user_id, payload}`, `payload` the event's metadata as a JSON object.
/// Affects one row per new event; an event whose conversation was already
/// recorded (before, or earlier in the same array), or was recorded and has
/// been pruned since (its key is in `pruned_conversations`, see
/// [`crate::retention`]) or erased with its user (its key is in
/// `erased_conversations`, see [`crate::user_data`]), is skipped (then see [`FIND_EVENT_BY_CONVERSATION`]).
///
/// The insert is the PL/pgSQL function `record_events` (migration
/// `planned_once`), planned once per pooled connection instead of on every
/// call; it answers a row for each event it inserted, which this statement
/// selects without columns: its affected-row count is the number of new
/// events, and it returns no columns, as no write does.
pub const INSERT_EVENTS: Write = crate::write!("SELECT FROM record_events($1::text)");

/// Finds the event already recorded for a user's conversation, to answer a repeat:
/// the erased key when the user was erased since (see [`crate::user_data`]),
/// else the pruned key when the event was pruned (each with its payload
/// compared by digest), which come first when an event of the conversation
/// exists too (a resend that raced the pruning, which is never scored), else
/// the event.
///
/// `$1` conversation_id text, `$2` the new payload (JSON text), `$3`
/// user_id text. Rows (one at most): `processing_id` uuid, `user_id` text,
/// `same_payload` bool.
pub const FIND_EVENT_BY_CONVERSATION: Read = crate::read!(
    "SELECT processing_id, user_id, same_payload FROM (
    SELECT -1 AS pruned_last, processing_id, $3::text AS user_id,
           payload_digest = sha256(convert_to($2::text::jsonb::text, 'UTF8')) AS same_payload
    FROM erased_conversations
    WHERE conversation_key = conversation_key($3::text, $1::text)
    UNION ALL
    SELECT 0, processing_id, user_id,
           payload_digest = sha256(convert_to($2::text::jsonb::text, 'UTF8')) AS same_payload
    FROM pruned_conversations
    WHERE user_id = $3::text AND conversation_id = $1::text
    UNION ALL
    SELECT 1, processing_id, user_id, payload = $2::text::jsonb
    FROM conversation_events
    WHERE user_id = $3::text AND conversation_id = $1::text
) found
ORDER BY pruned_last
LIMIT 1"
);

/// An event's status as clients and operators are shown it
/// (`EventStatus::client_visible`).
macro_rules! client_status {
    () => {
        "CASE WHEN status = 'scored' THEN 'pending' ELSE status END AS status"
    };
}

/// Shows one event, its status as its client is shown it.
///
/// `$1` processing_id uuid. Rows: `processing_id` uuid, `conversation_id`,
/// `user_id`, `status`, `attempts` int4, `last_error` text?, `accepted_at`
/// timestamp, `processed_at` timestamp?.
pub const GET_EVENT: Read = crate::read!(
    "SELECT processing_id, conversation_id, user_id,
       ",
    client_status!(),
    ",
       attempts, last_error,
       accepted_at AT TIME ZONE 'UTC' AS accepted_at,
       processed_at AT TIME ZONE 'UTC' AS processed_at
FROM conversation_events
WHERE processing_id = $1::uuid"
);

/// The statuses an operator lists: `$1` `pending` or `failed`, each with the
/// states shown as it (`client_status!`), as the array an index scan can use.
macro_rules! listed_statuses {
    () => {
        "status = ANY (CASE WHEN $1::text = 'pending' THEN ARRAY['pending', 'scored']
                    ELSE ARRAY[$1::text] END)"
    };
}

/// A page of the events of one status, newest first: what an operator
/// acts on (the dead letters, or a backlog). Both statuses hold few rows in
/// a healthy service, and the status index finds them.
///
/// `$1` status text (`pending` or `failed`), `$2` limit int8, `$3` offset
/// int8. Rows: as [`GET_EVENT`], then `next_attempt_at` timestamp.
pub const LIST_EVENTS: Read = crate::read!(
    "SELECT processing_id, conversation_id, user_id,
       ",
    client_status!(),
    ",
       attempts, last_error,
       accepted_at AT TIME ZONE 'UTC' AS accepted_at,
       processed_at AT TIME ZONE 'UTC' AS processed_at,
       next_attempt_at AT TIME ZONE 'UTC' AS next_attempt_at
FROM conversation_events
WHERE ",
    listed_statuses!(),
    "
ORDER BY accepted_at DESC, processing_id DESC
LIMIT $2::int8 OFFSET $3::int8"
);

/// How many events [`LIST_EVENTS`] pages through. `$1` status text. One
/// row: `total` int8.
pub const COUNT_EVENTS: Read = crate::read!(
    "SELECT count(*) AS total FROM conversation_events WHERE ",
    listed_statuses!()
);

/// Whether any event is due, whether any is `scored` but not yet
/// finished (a scorer stopped between commit and cache invalidation), and
/// whether any level change waits in the outbox (`crate::level_changes`),
/// without locking anything: an idle wake-up of the scorer costs this one
/// round trip and no transaction (each flag found by an index: the due,
/// status and unpublished ones). An event [`CLAIM_DUE_EVENTS`] never claims
/// (its conversation was pruned) is not due.
///
/// No parameters. One row: `due` bool, `unfinished` bool, `unpublished`
/// bool.
pub const ANY_DUE: Read = crate::read!(
    "SELECT EXISTS (
    SELECT 1 FROM conversation_events e
    WHERE status = 'pending' AND next_attempt_at <= now()
      AND NOT EXISTS (
        SELECT 1 FROM pruned_conversations p
        WHERE p.user_id = e.user_id AND p.conversation_id = e.conversation_id OFFSET 0)
) AS due,
EXISTS (SELECT 1 FROM conversation_events WHERE status = 'scored') AS unfinished,
EXISTS (SELECT 1 FROM level_change_outbox WHERE published_at IS NULL) AS unpublished"
);

/// The `scored` events: their effect committed and moved their user's
/// level; each is finished once its user's cached candidates are dropped.
///
/// `$1` how many at most, int8. Rows: `processing_id` uuid, `user_id` text.
pub const SCORED_EVENTS: Read = crate::read!(
    "SELECT processing_id, user_id
FROM conversation_events
WHERE status = 'scored'
ORDER BY processed_at
LIMIT $1::int8"
);

/// Marks `scored` events `processed`, after their users' cached candidates
/// were dropped.
///
/// `$1` a JSON array (text) of processing ids. Affects one row per event
/// that was `scored`.
pub const FINISH_SCORED: Write = crate::write!(
    "UPDATE conversation_events
SET status = 'processed', updated_at = now()
WHERE processing_id IN (SELECT (jsonb_array_elements_text($1::text::jsonb))::uuid)
  AND status = 'scored'"
);

/// Claims due events, inside the scorer's transaction, fairly between users:
/// among the oldest due events (at most ten times `$1`, through the due
/// index), each user's first event comes before anyone's second, each
/// user's second before anyone's third, and so on, oldest first within a
/// rank, and a batch holds at most ten events of one user. A batch's
/// transaction commits only once all its events are applied, and a user's
/// events are applied one after the other, so the share keeps one user's
/// backlog of hundreds of events from making another user's event wait for
/// more than two short batches. A user's own events keep their order.
///
/// `$1` how many at most, int8. Rows: `processing_id` uuid, `user_id` text,
/// `payload` (JSON text), `attempts` int4, `trace_id` text (null unless the
/// event was posted with a `traceparent`), and the database's `now` as a UTC
/// timestamp (the clock every date of the scoring uses). The rows stay
/// locked until the transaction ends; concurrent scorers skip them (the
/// ranking ignores locks: a scorer skips what another holds and takes the
/// next in rank).
///
/// An event whose conversation has a pruned key is never claimed: it can
/// only be a resend that raced the pruning of the conversation's scored
/// event (`docs/invariants.md`), and
/// [`crate::retention::SETTLE_PRUNED_REPEATS`] ends it without effect.
pub const CLAIM_DUE_EVENTS: Read = crate::read!(
    "SELECT e.processing_id, e.user_id, e.payload::text AS payload, e.attempts, e.trace_id,
       now() AT TIME ZONE 'UTC' AS now
FROM (
    SELECT processing_id, next_attempt_at, accepted_at,
           row_number() OVER (PARTITION BY user_id ORDER BY next_attempt_at, accepted_at) AS rank
    FROM (
        SELECT processing_id, user_id, next_attempt_at, accepted_at
        FROM conversation_events d
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND NOT EXISTS (
            SELECT 1 FROM pruned_conversations p
                WHERE p.user_id = d.user_id AND p.conversation_id = d.conversation_id OFFSET 0)
        ORDER BY next_attempt_at, accepted_at
        LIMIT $1::int8 * 10
    ) oldest
) due
JOIN conversation_events e USING (processing_id)
WHERE e.status = 'pending' AND due.rank <= 10
ORDER BY due.rank, due.next_attempt_at, due.accepted_at
LIMIT $1::int8
FOR UPDATE OF e SKIP LOCKED"
);

/// Records a failed attempt after the scorer's work on the event was rolled
/// back: the event is retried after `$4` seconds, or becomes `failed` once it
/// has used `$3` attempts.
///
/// `$1` processing_id uuid, `$2` last_error text, `$3` max attempts int4,
/// `$4` delay before the next attempt, seconds (float8). Affects one row
/// while the event is pending.
pub const RECORD_FAILURE: Write = crate::write!(
    "UPDATE conversation_events
SET attempts = attempts + 1,
    last_error = $2::text,
    status = CASE WHEN attempts + 1 >= $3::int4 THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $4::float8),
    updated_at = now()
WHERE processing_id = $1::uuid AND status = 'pending'"
);

/// Marks an event `failed` at once: its payload can never be scored.
///
/// `$1` processing_id uuid, `$2` last_error text.
pub const MARK_UNPROCESSABLE: Write = crate::write!(
    "UPDATE conversation_events
SET status = 'failed', attempts = attempts + 1, last_error = $2::text, updated_at = now()
WHERE processing_id = $1::uuid AND status = 'pending'"
);

/// Puts events back to be scored: every `failed` event (with a fresh set of
/// attempts) and every `pending` event accepted more than `$1` seconds ago
/// (whose notification may have been lost), due now.
///
/// `$1` seconds (float8). Affects one row per requeued event.
///
/// [`REDRIVE_SELECTED`] requeues chosen dead letters only.
pub const REDRIVE: Write = crate::write!(
    "UPDATE conversation_events
SET status = 'pending',
    attempts = CASE WHEN status = 'failed' THEN 0 ELSE attempts END,
    next_attempt_at = now(),
    updated_at = now()
WHERE status = 'failed'
   OR (status = 'pending' AND accepted_at < now() - make_interval(secs => $1::float8))"
);

/// Puts the chosen `failed` events back to be scored, with a fresh set of
/// attempts, due now; any other listed id (unknown, or not failed) is left
/// alone.
///
/// `$1` a JSON array (text) of processing ids. Affects one row per
/// requeued event.
pub const REDRIVE_SELECTED: Write = crate::write!(
    "UPDATE conversation_events
SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE status = 'failed'
  AND processing_id IN (SELECT jsonb_array_elements_text($1::text::jsonb)::uuid)"
);
