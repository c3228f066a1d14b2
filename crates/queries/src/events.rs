//! The durable record of conversation-end events: accept, show, claim, finish, redrive.
//!
//! An event is `pending` until the scorer commits its effect (`processed`) or
//! gives up after the last attempt (`failed`, with `last_error`). Claiming uses
//! `FOR UPDATE SKIP LOCKED` inside the scorer's transaction, so two scorers never
//! work on the same event and a crashed scorer's claim vanishes with its
//! transaction.

/// Records an event once per `conversation_id`.
///
/// `$1` conversation_id text, `$2` user_id text, `$3` payload (JSON text).
/// Returns `processing_id` (uuid) when the row was created, no row when the
/// conversation was already recorded.
pub const INSERT_EVENT: &str = "\
INSERT INTO conversation_events (conversation_id, user_id, payload)
VALUES ($1, $2, $3::text::jsonb)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING processing_id";

/// Finds the event already recorded for a conversation, to answer a repeat.
///
/// `$1` conversation_id text, `$2` the new payload (JSON text).
/// Returns `processing_id` uuid, `user_id` text, `same_payload` bool.
pub const FIND_EVENT_BY_CONVERSATION: &str = "\
SELECT processing_id, user_id, payload = $2::text::jsonb AS same_payload
FROM conversation_events
WHERE conversation_id = $1";

/// Shows one event.
///
/// `$1` processing_id uuid. Returns `processing_id` uuid, `conversation_id`,
/// `user_id`, `status`, `attempts` int4, `last_error` text?, `accepted_at`
/// timestamp, `processed_at` timestamp?.
pub const GET_EVENT: &str = "\
SELECT processing_id, conversation_id, user_id, status, attempts, last_error,
       accepted_at AT TIME ZONE 'UTC' AS accepted_at,
       processed_at AT TIME ZONE 'UTC' AS processed_at
FROM conversation_events
WHERE processing_id = $1";

/// Whether any event is due, without locking anything: an idle wake-up of
/// the scorer costs this one round trip and no transaction.
///
/// No parameters. Returns `due` bool.
pub const ANY_DUE: &str = "\
SELECT EXISTS (
    SELECT 1 FROM conversation_events WHERE status = 'pending' AND next_attempt_at <= now()
) AS due";

/// Claims the oldest due event, inside the scorer's transaction.
///
/// No parameters. Returns `processing_id` uuid, `user_id` text, `payload`
/// (JSON text), `attempts` int4, and the database's `now` as a UTC timestamp
/// (the clock every date of the scoring uses). The row stays locked until the
/// transaction ends; concurrent scorers skip it.
pub const CLAIM_DUE_EVENT: &str = "\
SELECT processing_id, user_id, payload::text AS payload, attempts,
       now() AT TIME ZONE 'UTC' AS now
FROM conversation_events
WHERE status = 'pending' AND next_attempt_at <= now()
ORDER BY next_attempt_at, accepted_at
LIMIT 1
FOR UPDATE SKIP LOCKED";

/// Marks a claimed event processed, in the same transaction as its effect.
///
/// `$1` processing_id uuid. Affects one row.
pub const MARK_PROCESSED: &str = "\
UPDATE conversation_events
SET status = 'processed', attempts = attempts + 1, processed_at = now(), updated_at = now()
WHERE processing_id = $1 AND status = 'pending'";

/// Records a failed attempt after the scorer's transaction was rolled back:
/// the event is retried after `$4` seconds, or becomes `failed` once it has
/// used `$3` attempts.
///
/// `$1` processing_id uuid, `$2` last_error text, `$3` max attempts int4,
/// `$4` delay before the next attempt, seconds (float8).
/// Returns `status` and `attempts`.
pub const RECORD_FAILURE: &str = "\
UPDATE conversation_events
SET attempts = attempts + 1,
    last_error = $2,
    status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $4),
    updated_at = now()
WHERE processing_id = $1 AND status = 'pending'
RETURNING status, attempts";

/// Marks an event `failed` at once: its payload can never be scored.
///
/// `$1` processing_id uuid, `$2` last_error text.
pub const MARK_UNPROCESSABLE: &str = "\
UPDATE conversation_events
SET status = 'failed', attempts = attempts + 1, last_error = $2, updated_at = now()
WHERE processing_id = $1 AND status = 'pending'";

/// Puts events back to be scored: every `failed` event (with a fresh set of
/// attempts) and every `pending` event accepted more than `$1` seconds ago
/// (whose notification may have been lost), due now.
///
/// `$1` seconds (float8). Returns one row per requeued event (`processing_id`).
pub const REDRIVE: &str = "\
UPDATE conversation_events
SET status = 'pending',
    attempts = CASE WHEN status = 'failed' THEN 0 ELSE attempts END,
    next_attempt_at = now(),
    updated_at = now()
WHERE status = 'failed'
   OR (status = 'pending' AND accepted_at < now() - make_interval(secs => $1))
RETURNING processing_id";
