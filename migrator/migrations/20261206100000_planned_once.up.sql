-- The two statements that the busiest uncached routes run on every request,
-- as PL/pgSQL functions. Spin sends every statement unnamed, so Postgres
-- parses and plans it again each time; the queries inside a PL/pgSQL
-- function are planned once per connection and kept while Spin pools the
-- connection (its recycling runs no DISCARD PLANS). Measured with pgbench on
-- two cores: the suggestion inputs 3,400 -> 11,000 calls/s, the event insert
-- 3,400-3,700 -> 5,000 calls/s. The statements themselves are unchanged;
-- friendship-queries calls them (`friendship::SUGGESTION_INPUTS`,
-- `events::INSERT_EVENTS`) and documents them.

-- What a suggestion is computed from, in one snapshot: the catalogue
-- version, the user's status as a JSON object (NULL for a user never seen),
-- and the active agents of the user's level (a stranger's when unknown) as a
-- JSON array ordered by id.
CREATE FUNCTION suggestion_inputs(p_user_id TEXT)
RETURNS TABLE (version BIGINT, status TEXT, agents TEXT)
LANGUAGE plpgsql STABLE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT v.version,
           (SELECT row_to_json(s) FROM (
                SELECT fs.user_id, fs.friendship_score::float8 AS friendship_score,
                       fs.friendship_level,
                       fs.last_interaction_date AT TIME ZONE 'UTC' AS last_interaction_date,
                       fs.streak_day, fs.total_turns, fs.topic_metrics::text AS topic_metrics,
                       fs.last_emotion
                FROM friendship_status AS fs WHERE fs.user_id = p_user_id) AS s)::text,
           (SELECT coalesce(json_agg(a ORDER BY a.id), '[]'::json)
            FROM (SELECT m.id, m.agent_id, m.agent_name, m.agent_description, m.agent_type,
                         m.weight, m.greeting_trigger, m.topic
                  FROM friendship_agent_mapping AS m
                  WHERE m.is_active
                    AND m.friendship_level = coalesce(
                          (SELECT fs.friendship_level FROM friendship_status AS fs
                           WHERE fs.user_id = p_user_id),
                          'stranger')) AS a)::text
    FROM catalogue_version AS v;
END
$fn$;

-- Records events once per conversation_id; answers the processing id of
-- each event it inserted, so that a caller's `execute` counts them. `p_events`
-- is a JSON array of {processing_id, conversation_id, user_id, payload}.
-- An event whose conversation was recorded before (or earlier in the same
-- array), or was recorded and pruned since (its key in
-- pruned_conversations), is skipped. accepted_at follows the array's order.
CREATE FUNCTION record_events(p_events TEXT)
RETURNS SETOF UUID
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RETURN QUERY
    INSERT INTO conversation_events (processing_id, conversation_id, user_id, payload, accepted_at)
    SELECT e.processing_id, e.conversation_id, e.user_id, e.payload, clock_timestamp()
    FROM jsonb_to_recordset(p_events::jsonb)
        AS e(processing_id uuid, conversation_id text, user_id text, payload jsonb)
    WHERE NOT EXISTS (
        SELECT 1 FROM pruned_conversations p WHERE p.conversation_id = e.conversation_id OFFSET 0)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING conversation_events.processing_id;
END
$fn$;
