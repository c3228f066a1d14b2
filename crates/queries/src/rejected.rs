//! Messages from Redis the scorer could not accept, kept for operators.

use crate::{Read, Write};

/// Records a rejected message once: a repeat of the same `dedupe_key` (the
/// same stream entry read again, or the same channel message heard by
/// another scorer) changes nothing.
///
/// `$1` source text (`channel` or `stream`), `$2` dedupe_key text, `$3`
/// stream entry id text?, `$4` reason text, `$5` payload head text, `$6`
/// payload size in bytes int4. Affects one row the first time, none after.
pub const INSERT: Write = crate::write!(
    "INSERT INTO rejected_messages
    (source, dedupe_key, stream_entry_id, reason, payload_head, payload_bytes)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::int4)
ON CONFLICT (dedupe_key) DO NOTHING"
);

/// How many messages were rejected. One row: `total` int8.
pub const COUNT: Read = crate::read!("SELECT count(*) AS total FROM rejected_messages");

/// A page of rejected messages, newest first. `$1` limit int8, `$2` offset
/// int8. Rows: `id` int8, `source`, `stream_entry_id` text?, `reason`,
/// `payload_head`, `payload_bytes` int4, `received_at` timestamp.
pub const LIST: Read = crate::read!(
    "SELECT id, source, stream_entry_id, reason, payload_head, payload_bytes,
       received_at AT TIME ZONE 'UTC' AS received_at
FROM rejected_messages
ORDER BY received_at DESC, id DESC
LIMIT $1::int8 OFFSET $2::int8"
);
