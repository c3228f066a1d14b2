//! Friendship status: reading it, and changing it atomically.
//!
//! Every change (a scored conversation or a service update) runs in one
//! transaction: [`ENSURE_USER`], [`LOCK_USER`] (the row and the level before),
//! [`APPLY_CHANGE`] (one statement that increments score, turns and per-topic
//! metrics in SQL and records the score history and any level transition),
//! then [`GET_STATUS`] reads the result. The level is a generated column, so it
//! always matches the score.

use crate::{Read, Write};

/// The status columns, in the order every status-returning statement uses.
///
/// `user_id`, `friendship_score` float8, `friendship_level`,
/// `last_interaction_date` timestamp?, `streak_day` int4, `total_turns` int8,
/// `topic_metrics` (JSON text), `last_emotion` text?.
macro_rules! status_columns {
    ($t:literal) => {
        concat!(
            $t,
            ".user_id, ",
            $t,
            ".friendship_score::float8 AS friendship_score, ",
            $t,
            ".friendship_level, ",
            $t,
            ".last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date, ",
            $t,
            ".streak_day, ",
            $t,
            ".total_turns, ",
            $t,
            ".topic_metrics::text AS topic_metrics, ",
            $t,
            ".last_emotion"
        )
    };
}

/// Reads one user's status. `$1` user_id text. Rows: the status columns.
pub const GET_STATUS: Read = crate::read!(
    "SELECT ",
    status_columns!("fs"),
    "\nFROM friendship_status AS fs\nWHERE fs.user_id = $1::text"
);

/// Reads one user's current level. `$1` user_id text. Rows: `friendship_level`.
pub const GET_LEVEL: Read =
    crate::read!("SELECT friendship_level FROM friendship_status WHERE user_id = $1::text");

/// Creates a stranger with no history when the user is new, and locks the
/// user's row until the transaction ends (the no-op `DO UPDATE` takes the
/// lock, waiting for another change of the same user to commit). The wait
/// happens here, in an `execute`, so a lock timeout comes back with its
/// SQLSTATE on every Spin version. `$1` user_id text. Affects one row.
pub const ENSURE_USER: Write = crate::write!(
    "INSERT INTO friendship_status (user_id) VALUES ($1::text)
ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id"
);

/// Reads a user's row for a change, locked (already, by [`ENSURE_USER`] in
/// the same transaction, so this read never waits), with what the change
/// needs to know beforehand. `$1` user_id text.
/// Rows: `last_interaction_date` timestamp?, `streak_day` int4, `friendship_level`.
pub const LOCK_USER: Read = crate::read!(
    "SELECT last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date, streak_day,
       friendship_level
FROM friendship_status
WHERE user_id = $1::text
FOR UPDATE"
);

/// Applies one change to an existing user, in one statement.
///
/// Parameters:
/// - `$1` user_id text
/// - `$2` score change float8 (the new score is floored at 0 and kept to 10
///   decimal places: an exact NUMERIC sum closer to a level boundary than a
///   double can tell, such as 499.99999999999999, would read back as `500`
///   with the level `acquaintance`; rounded, score and level always agree)
/// - `$3` turns to add, int8
/// - `$4` new streak_day int4, or NULL to keep it
/// - `$5` last emotion text, or NULL to keep it
/// - `$6` per-topic update, JSON text: `{topic: {score_change, turns_increment, last_date}}`;
///   scores and turns add up per topic (topic scores floored at 0), `last_date` is replaced
/// - `$7` processing_id uuid of the scored event, or NULL
/// - `$8` cause text: `conversation` or `service_update`
/// - `$9` bool: the change is an interaction (sets `last_interaction_date` to now)
///
/// Affects one row (its level transition) when the change moved the user's
/// level, none otherwise: the caller learns whether the level changed without
/// reading the status back.
pub const APPLY_CHANGE: Write = crate::write!(
    "WITH before AS (
    SELECT user_id, friendship_score, friendship_level
    FROM friendship_status
    WHERE user_id = $1::text
    FOR UPDATE
), updated AS (
    UPDATE friendship_status AS fs
    SET friendship_score = round(GREATEST(0, fs.friendship_score + $2::float8::numeric), 10),
        total_turns = fs.total_turns + $3::int8,
        streak_day = COALESCE($4::int4, fs.streak_day),
        last_emotion = COALESCE($5::text, fs.last_emotion),
        last_interaction_date = CASE WHEN $9::bool THEN now() ELSE fs.last_interaction_date END,
        topic_metrics = fs.topic_metrics || COALESCE((
            SELECT jsonb_object_agg(u.key, jsonb_build_object(
                'score', GREATEST(0, COALESCE((fs.topic_metrics -> u.key ->> 'score')::numeric, 0)
                                     + (u.value ->> 'score_change')::numeric),
                'total_turns', COALESCE((fs.topic_metrics -> u.key ->> 'total_turns')::int8, 0)
                               + (u.value ->> 'turns_increment')::int8,
                'last_date', u.value -> 'last_date'))
            FROM jsonb_each($6::text::jsonb) AS u), '{}'::jsonb),
        updated_at = now()
    FROM before
    WHERE fs.user_id = before.user_id
    RETURNING fs.*
), history AS (
    INSERT INTO friendship_score_history
        (user_id, cause, processing_id, score_change, score_before, score_after)
    SELECT $1::text, $8::text, $7::uuid, $2::float8::numeric,
           before.friendship_score, updated.friendship_score
    FROM before, updated
)
INSERT INTO friendship_level_transitions
    (user_id, from_level, to_level, score, cause, processing_id)
SELECT $1::text, before.friendship_level, updated.friendship_level,
       updated.friendship_score, $8::text, $7::uuid
FROM before, updated
WHERE before.friendship_level <> updated.friendship_level"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_read_returns_the_status_columns() {
        let columns = status_columns!("x");
        assert!(GET_STATUS.select.contains(&columns.replace("x.", "fs.")));
    }
}
