//! What `GET /metrics` reads, and the counters the scorer keeps for it.
//!
//! A scrape is one read ([`SNAPSHOT`]) that never scans a big table: the
//! totals come from `service_counters` (16 shard rows, summed), the backlog
//! from the partial index of unfinished events
//! (`conversation_events_unfinished_accepted_idx`), the dead letters from
//! the status index, the catalogue version from its singleton row.
//!
//! The counters are kept where the facts happen, in the same transaction:
//! the scorer adds each batch's outcomes with [`COUNT_BATCH`] just before
//! the batch commits; triggers of the metrics migration (deferred to the
//! commit) count users per level on every write of `friendship_status` and
//! every recorded rejected message. Every writer adds to the shard of its
//! backend (`pg_backend_pid() % 16`), so it locks one counter row only.

use crate::{Read, Write};

/// The upper bounds, in seconds, of the scoring-lag histogram's buckets,
/// as the statements of this module use them (a `float8[]` literal). The
/// metrics migration sizes `service_counters.lag_buckets` to match (13).
macro_rules! lag_bounds {
    () => {
        "'{0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[]"
    };
}

/// Adds a scorer batch's outcomes to the counters, inside the batch's
/// transaction, after every claimed event was marked: each claimed event
/// made one attempt; those now `processed` or `scored` succeeded (their lag,
/// `processed_at - accepted_at`, goes to the histogram), the others failed
/// (retried later, dead-lettered or unprocessable). The events are still
/// locked by the claim, so their status is this transaction's doing.
///
/// `$1` a JSON array (text) of the batch's processing ids. Affects the one
/// counter row of this backend's shard.
pub const COUNT_BATCH: Write = crate::write!(
    "WITH batch AS (
    SELECT e.status IN ('processed', 'scored') AS done,
           extract(epoch FROM e.processed_at - e.accepted_at)::float8 AS lag
    FROM conversation_events AS e
    WHERE e.processing_id IN (SELECT (jsonb_array_elements_text($1::text::jsonb))::uuid)
), bucketed AS (
    SELECT (SELECT min(b.i) FROM unnest(",
    lag_bounds!(),
    ") WITH ORDINALITY AS b(le, i)
            WHERE batch.lag <= b.le) AS i,
           count(*) AS n
    FROM batch
    WHERE batch.done
    GROUP BY 1
), added AS (
    SELECT ARRAY(SELECT coalesce(sum(bucketed.n) OVER (ORDER BY g.i), 0)::int8
                 FROM generate_series(1, 13) AS g(i)
                 LEFT JOIN bucketed ON bucketed.i = g.i
                 ORDER BY g.i) AS buckets
)
UPDATE service_counters AS c SET
    events_processed = c.events_processed + (SELECT count(*) FROM batch WHERE done),
    scoring_attempts = c.scoring_attempts + (SELECT count(*) FROM batch),
    scoring_failures = c.scoring_failures + (SELECT count(*) FROM batch WHERE NOT done),
    lag_seconds_sum = c.lag_seconds_sum
        + (SELECT coalesce(sum(lag), 0) FROM batch WHERE done),
    lag_buckets = ARRAY(SELECT u.before + u.added
                        FROM unnest(c.lag_buckets, (SELECT buckets FROM added))
                            WITH ORDINALITY AS u(before, added, i)
                        ORDER BY u.i)
WHERE c.shard = pg_backend_pid() % 16"
);

/// Everything a scrape shows from Postgres, in one row.
///
/// No parameters. One row: `events_pending` int8 (`pending` and the
/// internal `scored`), `events_failed` int8, `oldest_pending_age_seconds`
/// float8 (0 when none is pending), `events_processed` int8,
/// `scoring_attempts` int8, `scoring_failures` int8, `rejected_messages`
/// int8, `users_stranger` int8, `users_acquaintance` int8, `users_friend`
/// int8, `lag_seconds_sum` float8, `lag_buckets` text (a JSON array of
/// `{"le": float8, "count": int8}`, cumulative, by bound), `catalogue_version`
/// int8.
pub const SNAPSHOT: Read = crate::read!(
    "SELECT
    (SELECT count(*) FROM conversation_events
     WHERE status IN ('pending', 'scored')) AS events_pending,
    (SELECT count(*) FROM conversation_events WHERE status = 'failed') AS events_failed,
    (SELECT GREATEST(0, coalesce(extract(epoch FROM now() - min(accepted_at)), 0))::float8
     FROM conversation_events
     WHERE status IN ('pending', 'scored')) AS oldest_pending_age_seconds,
    c.events_processed, c.scoring_attempts, c.scoring_failures, c.rejected_messages,
    c.users_stranger, c.users_acquaintance, c.users_friend, c.lag_seconds_sum,
    (SELECT json_agg(json_build_object('le', b.le, 'count', c.lag_buckets[b.i]) ORDER BY b.i)
     FROM unnest(",
    lag_bounds!(),
    ") WITH ORDINALITY AS b(le, i))::text AS lag_buckets,
    (SELECT version FROM catalogue_version) AS catalogue_version
FROM (
    SELECT sum(events_processed)::int8 AS events_processed,
           sum(scoring_attempts)::int8 AS scoring_attempts,
           sum(scoring_failures)::int8 AS scoring_failures,
           sum(rejected_messages)::int8 AS rejected_messages,
           sum(users_stranger)::int8 AS users_stranger,
           sum(users_acquaintance)::int8 AS users_acquaintance,
           sum(users_friend)::int8 AS users_friend,
           sum(lag_seconds_sum)::float8 AS lag_seconds_sum,
           ARRAY(SELECT sum(u.n)::int8
                 FROM service_counters AS s, unnest(s.lag_buckets) WITH ORDINALITY AS u(n, i)
                 GROUP BY u.i ORDER BY u.i) AS lag_buckets
    FROM service_counters
) AS c"
);
