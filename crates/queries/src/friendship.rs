//! Friendship status: reading it, and changing it atomically.
//!
//! Every change (a scored conversation or a service update) runs in one
//! transaction: [`ENSURE_USERS`], [`LOCK_USERS`] (the rows and the levels
//! before; the scorer locks a whole batch's users at once), [`APPLY_CHANGES`]
//! (one statement that increments score, turns and per-topic metrics in SQL,
//! records the score history and any level transition, and marks the scored
//! event processed), then, when the level moved, [`GET_STATUS`] reads the
//! result. The level is a generated column, so it
//! always matches the score. Inactivity decay claims its users with
//! [`CLAIM_DECAY`] and applies through [`APPLY_CHANGES`] like any change.

use crate::{Read, Write};

/// Reads one user's status. `$1` user_id text. Rows (the status columns):
/// `user_id`, `friendship_score` float8, `friendship_level`,
/// `last_interaction_date` timestamp?, `streak_day` int4, `total_turns` int8,
/// `topic_metrics` (JSON text), `last_emotion` text?. The native tests decode
/// them strictly (`tests/sql/rules.rs`), and compare them with the status
/// object of [`SUGGESTION_INPUTS`].
pub const GET_STATUS: Read = crate::read!(
    "SELECT fs.user_id, fs.friendship_score::float8 AS friendship_score, fs.friendship_level,
       fs.last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date, fs.streak_day,
       fs.total_turns, fs.topic_metrics::text AS topic_metrics, fs.last_emotion
FROM friendship_status AS fs
WHERE fs.user_id = $1::text"
);

/// What a suggestion is computed from, in one snapshot and one round trip:
/// the catalogue version, the user's status (NULL for a user never seen)
/// and the active agents of the user's level (a stranger's when unknown).
///
/// `$1` user_id text. One row: `version` int8, `status` text? (a JSON
/// object of the status columns), `agents` text (a JSON array, by id, of
/// objects with `id`, `agent_id`, `agent_name`, `agent_description`,
/// `agent_type`, `weight`, `greeting_trigger`, `topic`; empty when the level
/// has no active agent). JSON travels as text, as every read's does.
///
/// The statement is the PL/pgSQL function `suggestion_inputs` (migration
/// `planned_once`), which Postgres plans once per pooled connection instead
/// of on every call: planning was two thirds of its cost. Its status object
/// has the columns of [`GET_STATUS`] (a native test compares the two).
pub const SUGGESTION_INPUTS: Read =
    crate::read!("SELECT version, status, agents FROM suggestion_inputs($1::text)");

/// Reads one user's current level. `$1` user_id text. Rows: `friendship_level`.
pub const GET_LEVEL: Read =
    crate::read!("SELECT friendship_level FROM friendship_status WHERE user_id = $1::text");

/// Creates the users that are new (strangers with no history) and locks
/// every listed user's row until the transaction ends (the no-op `DO UPDATE`
/// takes the lock, waiting for another change of the same user to commit).
/// Rows are locked in byte order of `user_id` (`COLLATE "C"`), the order
/// every scorer uses, so two batches of overlapping users never deadlock.
/// The wait happens here, in an `execute`, so a lock timeout comes back with
/// its SQLSTATE on every Spin version.
///
/// `$1` a JSON array (text) of user ids; repeats are allowed. Affects one
/// row per distinct user.
pub const ENSURE_USERS: Write = crate::write!(
    "INSERT INTO friendship_status (user_id)
SELECT d.user_id
FROM (SELECT DISTINCT u.user_id FROM jsonb_array_elements_text($1::text::jsonb) AS u(user_id)) AS d
ORDER BY d.user_id COLLATE \"C\"
ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id"
);

/// Reads users' rows for a change, locked (already, by [`ENSURE_USERS`] in
/// the same transaction, so this read never waits), with what the change
/// needs to know beforehand. `$1` a JSON array (text) of user ids.
/// Rows: `user_id`, `last_interaction_date` timestamp?, `streak_day` int4,
/// `friendship_level`; one per existing listed user, in `user_id` order.
/// Each row decodes as a `friendship_domain::Locked` (unknown columns
/// refused), the type a change is planned from.
pub const LOCK_USERS: Read = crate::read!(
    "SELECT user_id, last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date,
       streak_day, friendship_level
FROM friendship_status
WHERE user_id IN (SELECT jsonb_array_elements_text($1::text::jsonb))
ORDER BY user_id COLLATE \"C\"
FOR UPDATE"
);

/// Applies changes to existing users, in one statement: a whole round of a
/// scorer's batch (planned once, instead of once per event), or one service
/// update. Each change is applied as if alone: its score floored at 0, its
/// own history line and level transition, its own event marked.
///
/// `$1` a JSON array (text) of changes, **at most one per user** (a user
/// listed twice would be updated once; callers split such changes into
/// rounds), each a serialised `friendship_domain::Change`, an object with
/// the fields below. `jsonb_to_recordset` ignores a key its column list does
/// not name, so a native test (`tests/sql/friendship.rs`) checks that the
/// column list names exactly the fields of `Change`, with matching types:
/// - `user_id` text
/// - `score_change` float8, the change asked for (the new score is floored
///   at 0 and kept to 10 decimal places: an exact NUMERIC sum closer to a
///   level boundary than a double can tell, such as 499.99999999999999,
///   would read back as `500` with the level `acquaintance`; rounded, score
///   and level always agree)
/// - `turns_increment` int8
/// - `streak_day` int4, or null to keep it
/// - `last_emotion` text, or null to keep it
/// - `topics`: per-topic updates, `{topic: {score_change, turns_increment,
///   last_date}}`; scores and turns add up per topic (topic scores floored
///   at 0), `last_date` is replaced
/// - `processing_id` uuid of the scored event, or null; a pending event with
///   this id is marked by the same statement (one more attempt,
///   `processed_at` now), so its effect and its mark cannot part:
///   `processed`, or `scored` when the level moved (see
///   [`crate::events::FINISH_SCORED`])
/// - `cause` text: `conversation`, `service_update` or `decay`; a `decay`
///   change counts one more day of decay applied (`decay_days_applied`, see
///   [`CLAIM_DECAY`])
/// - `interaction` bool: the change is an interaction (sets
///   `last_interaction_date` to now and starts the days of decay again
///   from 0)
/// - `max_topics` int4: the most topics the user keeps. When the merged
///   topics are more, the least recently engaged go (the oldest
///   `last_date`; among equal dates the name that sorts last in byte order
///   goes first), in this statement, on the locked row: the bound holds
///   under any concurrency. A user above the bound (a lower bound deployed)
///   is brought within it by its next change.
/// - `daily_score_cap` float8, or null: the day's budget of score gain. A
///   positive `score_change` is applied only up to what is left of it on the
///   current UTC day (`now() AT TIME ZONE 'UTC'`): `daily_gain` counts what
///   conversations applied on `daily_gain_date` (another day counts as 0).
///   Null applies the change whole. A conversation's applied change always
///   counts towards its day (so turning the cap on mid-day counts what came
///   before); a service update neither counts nor is capped. The row is
///   locked and the budget read and spent in this statement, so concurrent
///   events never pass the cap together.
///
/// The history line keeps both figures: `score_change` (asked) and
/// `score_applied` (what the cap let through; `score_after` is
/// `max(0, score_before + score_applied)`).
///
/// A change that moves its user's level also writes its transition to the
/// outbox (`level_change_outbox`), in this statement: every transition is
/// published ([`crate::level_changes`]), whatever caused it.
///
/// Affects one row (a level transition's outbox row) per change that moved
/// its user's level: the caller learns whether any level moved without
/// reading back.
pub const APPLY_CHANGES: Write = crate::write!(
    "WITH c AS (
    SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS c(
        user_id text, score_change float8, turns_increment int8, streak_day int4,
        last_emotion text, topics jsonb, processing_id uuid, cause text, interaction bool,
        max_topics int4, daily_score_cap float8)
), before AS (
    SELECT fs.user_id, fs.friendship_score, fs.friendship_level,
           CASE WHEN fs.daily_gain_date = (now() AT TIME ZONE 'UTC')::date
                THEN fs.daily_gain ELSE 0 END AS gained_today
    FROM friendship_status AS fs
    JOIN c ON c.user_id = fs.user_id
    FOR UPDATE OF fs
), a AS (
    SELECT c.*, before.gained_today,
           CASE WHEN c.daily_score_cap IS NULL OR c.score_change <= 0
                THEN c.score_change::numeric
                ELSE LEAST(c.score_change::numeric,
                           GREATEST(0, c.daily_score_cap::numeric - before.gained_today))
           END AS score_applied
    FROM c
    JOIN before ON before.user_id = c.user_id
), updated AS (
    UPDATE friendship_status AS fs
    SET friendship_score = round(GREATEST(0, fs.friendship_score + a.score_applied), 10),
        total_turns = fs.total_turns + a.turns_increment,
        streak_day = COALESCE(a.streak_day, fs.streak_day),
        last_emotion = COALESCE(a.last_emotion, fs.last_emotion),
        last_interaction_date = CASE WHEN a.interaction THEN now() ELSE fs.last_interaction_date END,
        daily_gain = CASE WHEN a.cause = 'conversation'
                          THEN a.gained_today + GREATEST(0, a.score_applied)
                          ELSE fs.daily_gain END,
        daily_gain_date = CASE WHEN a.cause = 'conversation'
                               THEN (now() AT TIME ZONE 'UTC')::date
                               ELSE fs.daily_gain_date END,
        decay_days_applied = CASE WHEN a.interaction THEN 0
                                  WHEN a.cause = 'decay' THEN fs.decay_days_applied + 1
                                  ELSE fs.decay_days_applied END,
        topic_metrics = (
            SELECT COALESCE(jsonb_object_agg(kept.key, kept.value), '{}'::jsonb)
            FROM (
                SELECT m.key, m.value
                FROM jsonb_each(fs.topic_metrics || COALESCE((
                    SELECT jsonb_object_agg(u.key, jsonb_build_object(
                        'score', GREATEST(0, COALESCE((fs.topic_metrics -> u.key ->> 'score')::numeric, 0)
                                             + (u.value ->> 'score_change')::numeric),
                        'total_turns', COALESCE((fs.topic_metrics -> u.key ->> 'total_turns')::int8, 0)
                                       + (u.value ->> 'turns_increment')::int8,
                        'last_date', u.value -> 'last_date'))
                    FROM jsonb_each(COALESCE(a.topics, '{}'::jsonb)) AS u), '{}'::jsonb)) AS m
                ORDER BY (m.value ->> 'last_date')::timestamptz DESC, m.key COLLATE \"C\"
                LIMIT GREATEST(a.max_topics, 1)
            ) AS kept),
        updated_at = now()
    FROM a
    WHERE fs.user_id = a.user_id
    RETURNING fs.user_id, fs.friendship_score, fs.friendship_level
), applied AS (
    SELECT a.user_id, a.score_change, a.score_applied, a.processing_id, a.cause,
           before.friendship_score AS score_before, before.friendship_level AS level_before,
           updated.friendship_score AS score_after, updated.friendship_level AS level_after
    FROM a
    JOIN before ON before.user_id = a.user_id
    JOIN updated ON updated.user_id = a.user_id
), history AS (
    INSERT INTO friendship_score_history
        (user_id, cause, processing_id, score_change, score_applied, score_before, score_after)
    SELECT user_id, cause, processing_id, score_change::numeric, score_applied, score_before,
           score_after
    FROM applied
), marked AS (
    UPDATE conversation_events AS e
    SET status = CASE WHEN applied.level_before <> applied.level_after
                      THEN 'scored' ELSE 'processed' END,
        attempts = e.attempts + 1, processed_at = now(), updated_at = now()
    FROM applied
    WHERE e.processing_id = applied.processing_id AND e.status = 'pending'
), transitions AS (
    INSERT INTO friendship_level_transitions
        (user_id, from_level, to_level, score, cause, processing_id)
    SELECT user_id, level_before, level_after, score_after, cause, processing_id
    FROM applied
    WHERE level_before <> level_after
    RETURNING id
)
INSERT INTO level_change_outbox (transition_id)
SELECT id FROM transitions"
);

/// Claims, inside the caller's transaction, up to `$2` users due a day of
/// inactivity decay, longest absent first, `FOR UPDATE SKIP LOCKED`: scorers
/// deciding at once take disjoint users, and none waits. A user is due when
/// it has points left and its last interaction is at least `$1` + its days
/// of decay applied + 1 whole days ago (`decay_days_applied`, which
/// [`APPLY_CHANGES`] counts up with each decay change and resets on an
/// interaction): the `n`-th day past the grace of `$1` days is claimed once
/// it has begun, and once only, since its change counts it on the locked row
/// (a scorer that finds the row changed under its lock checks it again, and
/// skips it). Days not yet applied (decay turned on, scorers stopped) are
/// applied one per claim, so each day keeps its own history line.
///
/// The first bound on `last_interaction_date` is the same with no day
/// applied: it lets the scan start in the index `friendship_status_decay_idx`
/// (users with points left) instead of reading every row.
///
/// `$1` the grace, whole days int4, `$2` how many at most int8. Rows: the
/// columns of [`LOCK_USERS`] (a `friendship_domain::Locked` each), longest
/// absent first.
pub const CLAIM_DECAY: Read = crate::read!(
    "SELECT user_id, last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date,
       streak_day, friendship_level
FROM friendship_status
WHERE friendship_score > 0 AND last_interaction_date IS NOT NULL
  AND last_interaction_date <= now() - make_interval(days => $1::int4 + 1)
  AND last_interaction_date <= now() - make_interval(days => $1::int4 + decay_days_applied + 1)
ORDER BY last_interaction_date
LIMIT $2::int8
FOR UPDATE SKIP LOCKED"
);
