//! Friendship status: reading it, and changing it atomically.
//!
//! Every change (a scored conversation or a service update) goes through
//! [`APPLY_CHANGE`], one statement that increments score, turns and per-topic
//! metrics in SQL on the locked row and records the score history and any
//! level transition. The level is a generated column, so it always matches the
//! score.

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

/// Reads one user's status. `$1` user_id text. Columns: see the module.
pub const GET_STATUS: &str = concat!(
    "SELECT ",
    status_columns!("fs"),
    "\nFROM friendship_status AS fs\nWHERE fs.user_id = $1"
);

/// Reads one user's current level. `$1` user_id text. Returns `friendship_level`.
pub const GET_LEVEL: &str = "SELECT friendship_level FROM friendship_status WHERE user_id = $1";

/// Creates a stranger with no history when the user is new. `$1` user_id text.
pub const ENSURE_USER: &str = "\
INSERT INTO friendship_status (user_id) VALUES ($1)
ON CONFLICT (user_id) DO NOTHING";

/// Locks a user's row for a conversation's scoring and returns what the
/// streak rule needs. `$1` user_id text.
/// Returns `last_interaction_date` timestamp?, `streak_day` int4.
pub const LOCK_FOR_CONVERSATION: &str = "\
SELECT last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date, streak_day
FROM friendship_status
WHERE user_id = $1
FOR UPDATE";

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
/// Returns the status columns (see the module) and `previous_level`.
pub const APPLY_CHANGE: &str = concat!(
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
), transition AS (
    INSERT INTO friendship_level_transitions
        (user_id, from_level, to_level, score, cause, processing_id)
    SELECT $1::text, before.friendship_level, updated.friendship_level,
           updated.friendship_score, $8::text, $7::uuid
    FROM before, updated
    WHERE before.friendship_level <> updated.friendship_level
)
SELECT ",
    status_columns!("updated"),
    ", before.friendship_level AS previous_level
FROM before, updated"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_statements_return_the_same_columns_in_the_same_order() {
        let columns = status_columns!("x");
        assert!(GET_STATUS.contains(&columns.replace("x.", "fs.")));
        assert!(APPLY_CHANGE.contains(&columns.replace("x.", "updated.")));
    }
}
