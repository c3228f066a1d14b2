-- What GET /metrics reads, kept so that a scrape never scans a big table:
-- conversation_events grows by one row per conversation and loses processed
-- rows to retention, and friendship_status holds one row per user.
--
-- service_counters holds totals as sums over 16 shards. A transaction adds
-- to the one shard of its backend (pg_backend_pid() % 16), so it only ever
-- locks one counter row: two writers never deadlock on counters, and
-- connections of different shards never wait on each other. A scrape sums
-- the 16 rows. A shard's user counts are deltas and may be negative; their
-- sums are the numbers of users per level.
CREATE TABLE service_counters (
    shard SMALLINT PRIMARY KEY CHECK (shard BETWEEN 0 AND 15),
    -- Events whose effect committed (marked processed, or scored on the way there).
    events_processed BIGINT NOT NULL DEFAULT 0,
    -- Scoring attempts, and those that failed (retried later, dead-lettered,
    -- or unprocessable); a batch rolled back by an outage counts none.
    scoring_attempts BIGINT NOT NULL DEFAULT 0,
    scoring_failures BIGINT NOT NULL DEFAULT 0,
    -- Redis messages recorded in rejected_messages.
    rejected_messages BIGINT NOT NULL DEFAULT 0,
    users_stranger BIGINT NOT NULL DEFAULT 0,
    users_acquaintance BIGINT NOT NULL DEFAULT 0,
    users_friend BIGINT NOT NULL DEFAULT 0,
    -- Scoring lag (processed_at - accepted_at) of processed events: the sum
    -- in seconds, and per upper bound of friendship_queries::metrics's
    -- LAG_BOUNDS (13 bounds), how many lags were at most that bound
    -- (cumulative, as Prometheus buckets are); the count is events_processed.
    lag_seconds_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    lag_buckets BIGINT[] NOT NULL DEFAULT array_fill(0::bigint, ARRAY[13])
        CHECK (cardinality(lag_buckets) = 13)
);

INSERT INTO service_counters (shard) SELECT generate_series(0, 15);

-- Backfill, once: what the counters would hold had they always existed.
-- Attempts of events already processed include the successful one.
WITH lags AS (
    SELECT extract(epoch FROM processed_at - accepted_at)::float8 AS lag
    FROM conversation_events
    WHERE status IN ('processed', 'scored')
), bucketed AS (
    -- The first bound each lag is at most (NULL above the last: +Inf only).
    SELECT (SELECT min(b.i) FROM unnest('{0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[])
                WITH ORDINALITY AS b(le, i) WHERE l.lag <= b.le) AS i,
           count(*) AS n
    FROM lags AS l
    GROUP BY 1
), events AS (
    SELECT (SELECT count(*) FROM lags) AS processed,
           (SELECT coalesce(sum(attempts), 0) FROM conversation_events) AS attempts,
           (SELECT coalesce(sum(lag), 0) FROM lags) AS lag_sum,
           ARRAY(SELECT coalesce(sum(bucketed.n) OVER (ORDER BY g.i), 0)::bigint
                 FROM generate_series(1, 13) AS g(i)
                 LEFT JOIN bucketed ON bucketed.i = g.i
                 ORDER BY g.i) AS buckets
), users AS (
    SELECT count(*) FILTER (WHERE friendship_level = 'stranger') AS stranger,
           count(*) FILTER (WHERE friendship_level = 'acquaintance') AS acquaintance,
           count(*) FILTER (WHERE friendship_level = 'friend') AS friend
    FROM friendship_status
)
UPDATE service_counters SET
    events_processed = events.processed,
    scoring_attempts = events.attempts,
    scoring_failures = events.attempts - events.processed,
    lag_seconds_sum = events.lag_sum,
    lag_buckets = events.buckets,
    rejected_messages = (SELECT count(*) FROM rejected_messages),
    users_stranger = users.stranger,
    users_acquaintance = users.acquaintance,
    users_friend = users.friend
FROM events, users
WHERE shard = 0;

-- Users per level, kept by every write of friendship_status (the scorer,
-- friendship/update, anything else): a new row adds to its level, a level
-- change moves one user, a deletion removes one. Constraint triggers,
-- deferred to the commit: the counter row is the last lock a transaction
-- takes, so it cannot take part in a deadlock with the user rows, and a
-- savepoint rolled back takes its pending counts with it. The update
-- trigger's WHEN runs as the row is written (no function call): a score
-- change that keeps the level costs nothing more.
CREATE FUNCTION count_users_per_level() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE service_counters SET
        users_stranger = users_stranger
            + (TG_OP <> 'DELETE' AND NEW.friendship_level = 'stranger')::int
            - (TG_OP <> 'INSERT' AND OLD.friendship_level = 'stranger')::int,
        users_acquaintance = users_acquaintance
            + (TG_OP <> 'DELETE' AND NEW.friendship_level = 'acquaintance')::int
            - (TG_OP <> 'INSERT' AND OLD.friendship_level = 'acquaintance')::int,
        users_friend = users_friend
            + (TG_OP <> 'DELETE' AND NEW.friendship_level = 'friend')::int
            - (TG_OP <> 'INSERT' AND OLD.friendship_level = 'friend')::int
    WHERE shard = pg_backend_pid() % 16;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER friendship_status_count_inserted
    AFTER INSERT ON friendship_status DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION count_users_per_level();
CREATE CONSTRAINT TRIGGER friendship_status_count_level_changed
    AFTER UPDATE ON friendship_status DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.friendship_level IS DISTINCT FROM NEW.friendship_level)
    EXECUTE FUNCTION count_users_per_level();
CREATE CONSTRAINT TRIGGER friendship_status_count_deleted
    AFTER DELETE ON friendship_status DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION count_users_per_level();

-- Rejected Redis messages: a rare path; retention may delete the rows, the
-- total stays.
CREATE FUNCTION count_rejected_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE service_counters SET rejected_messages = rejected_messages + 1
    WHERE shard = pg_backend_pid() % 16;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER rejected_messages_count_inserted
    AFTER INSERT ON rejected_messages DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION count_rejected_message();

-- The events not yet processed (pending, and scored waiting for the cache
-- invalidation), by acceptance: the oldest is one index probe, their count
-- an index-only scan over them alone.
CREATE INDEX conversation_events_unfinished_accepted_idx
    ON conversation_events (accepted_at) WHERE status IN ('pending', 'scored');
