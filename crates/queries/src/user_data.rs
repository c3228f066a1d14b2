//! The user's own data: the score history read newest first, the export of
//! everything the service holds about one user, and its erasure.
//!
//! Every list here is walked by a stable cursor, never an offset: history
//! lines get their `id` from a sequence drawn while the user's status row is
//! locked (`friendship::APPLY_CHANGES`), so one user's lines commit in `id`
//! order, and a page that starts below the last `id` a client saw never
//! repeats or skips a line, whatever is scored meanwhile (new lines only
//! ever come above). The indexes on `(user_id, id)` and
//! `(user_id, processing_id)` (migration `user_data`) serve every page.

use crate::{Read, Write};

/// The columns of a history line (`h`), shared by the history route and the
/// export: `id` int8, `created_at` timestamp, `cause` text, `processing_id`
/// uuid? (the scored event, for a conversation), `score_change` float8 (the
/// change asked for), `score_applied` float8 (what the score moved: the
/// daily cap and the floor at 0 may cut the change), `score_before` float8,
/// `score_after` float8.
macro_rules! history_line {
    () => {
        "h.id, h.created_at AT TIME ZONE 'UTC' AS created_at, h.cause, h.processing_id,
       h.score_change::float8 AS score_change,
       (h.score_after - h.score_before)::float8 AS score_applied,
       h.score_before::float8 AS score_before, h.score_after::float8 AS score_after"
    };
}

/// A page of one user's history lines, newest first: those with an `id`
/// below `$2`.
///
/// `$1` user_id text, `$2` int8 the cursor (the `id` of the last line already
/// shown; `9223372036854775807` for the first page), `$3` int8 how many.
/// Rows: the columns of `history_line!`.
pub const HISTORY: Read = crate::read!(
    "SELECT ",
    history_line!(),
    "
FROM friendship_score_history AS h
WHERE h.user_id = $1::text AND h.id < $2::int8
ORDER BY h.id DESC
LIMIT $3::int8"
);

/// A page of one user's events, with their payloads, by `processing_id`:
/// those after `$2`.
///
/// `$1` user_id text, `$2` uuid the cursor (the nil UUID for the first page),
/// `$3` int8 how many. Rows: `processing_id` uuid, `conversation_id`,
/// `status` (as stored), `attempts` int4, `last_error` text?, `accepted_at`
/// timestamp, `processed_at` timestamp?, `trace_id` text?, `payload` (JSON
/// text, the event's normalised metadata).
pub const EXPORT_EVENTS: Read = crate::read!(
    "SELECT processing_id, conversation_id, status, attempts, last_error,
       accepted_at AT TIME ZONE 'UTC' AS accepted_at,
       processed_at AT TIME ZONE 'UTC' AS processed_at, trace_id, payload::text AS payload
FROM conversation_events
WHERE user_id = $1::text AND processing_id > $2::uuid
ORDER BY processing_id
LIMIT $3::int8"
);

/// A page of one user's level transitions, newest first: those with an `id`
/// below `$2`. `$1` user_id text, `$2` int8 the cursor, `$3` int8 how many.
/// Rows: `id` int8, `from_level`, `to_level`, `score` float8, `cause`,
/// `processing_id` uuid?, `created_at` timestamp.
pub const EXPORT_TRANSITIONS: Read = crate::read!(
    "SELECT id, from_level, to_level, score::float8 AS score, cause, processing_id,
       created_at AT TIME ZONE 'UTC' AS created_at
FROM friendship_level_transitions
WHERE user_id = $1::text AND id < $2::int8
ORDER BY id DESC
LIMIT $3::int8"
);

/// A page of the rejected messages that name the user (their payload's
/// first 4 KiB hold the user id as a JSON string), newest first: those with
/// an `id` below `$2`. Rejected messages are few and kept
/// `rejected_retention_days`, so this scans them.
///
/// `$1` user_id text, `$2` int8 the cursor, `$3` int8 how many. Rows: `id`
/// int8, `source`, `reason`, `stream_entry_id` text?, `payload_head`,
/// `payload_bytes` int4, `received_at` timestamp.
pub const EXPORT_REJECTED: Read = crate::read!(
    "SELECT id, source, reason, stream_entry_id, payload_head, payload_bytes,
       received_at AT TIME ZONE 'UTC' AS received_at
FROM rejected_messages
WHERE strpos(payload_head, to_jsonb($1::text)::text) > 0 AND id < $2::int8
ORDER BY id DESC
LIMIT $3::int8"
);

/// One batch of a user's erasure, in its own transaction: the PL/pgSQL
/// function `erase_user` (migration `user_data`), which removes at most `$2`
/// rows in this order: events (each one's idempotency key kept in
/// `erased_conversations` as SHA-256 of the user and conversation ids, with
/// its processing id and a digest of its payload), pruned keys (moved there
/// too), history lines, level transitions (the outbox), rejected messages
/// naming the user, then, once nothing else is left, the status row. It
/// holds the user's advisory lock, which `events::INSERT_EVENTS` takes
/// shared, so a resend racing the erasure finds its key.
///
/// `$1` user_id text, `$2` int4 the batch. Affects one row when nothing of
/// the user is left (the erasure is complete), none when more batches are
/// needed; a complete erasure run again affects one row and changes nothing.
pub const ERASE_BATCH: Write =
    crate::write!("SELECT FROM erase_user($1::text, $2::int4) AS done WHERE done");
