-- Messages from Redis (the events channel or the events stream) that the scorer
-- could not accept: not JSON, not a valid event or doorbell, too large, or a
-- conversation_id already recorded with another user or payload. Nothing
-- arriving on Redis vanishes silently: it is an event or a line here.
CREATE TABLE rejected_messages (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('channel', 'stream')),
    -- One line per message: the stream entry id, or for the channel (where every
    -- scorer receives every message) a digest of the payload.
    dedupe_key TEXT NOT NULL UNIQUE,
    stream_entry_id TEXT NULL,
    reason TEXT NOT NULL,
    -- The first 4 KiB of the payload (invalid UTF-8 replaced), and its size.
    payload_head TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL CHECK (payload_bytes >= 0),
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The admin list: newest first.
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at DESC, id DESC);
