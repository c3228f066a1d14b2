-- One row per user: the friendship score and everything derived from conversations.
-- The level is a stored generated column so it can never disagree with the score;
-- the domain's Level::from_score states the same rule (stranger < 100 <= acquaintance < 500 <= friend).
CREATE TABLE friendship_status (
    user_id TEXT PRIMARY KEY CHECK (char_length(user_id) BETWEEN 3 AND 128),
    friendship_score NUMERIC NOT NULL DEFAULT 0 CHECK (friendship_score >= 0),
    friendship_level TEXT NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN friendship_score >= 500 THEN 'friend'
            WHEN friendship_score >= 100 THEN 'acquaintance'
            ELSE 'stranger'
        END
    ) STORED CHECK (friendship_level IN ('stranger', 'acquaintance', 'friend')),
    total_turns BIGINT NOT NULL DEFAULT 0 CHECK (total_turns >= 0),
    -- {"music": {"score": 4.5, "total_turns": 8, "last_date": "<RFC 3339>"}}
    topic_metrics JSONB NOT NULL DEFAULT '{}',
    -- Time of the last scored conversation; service updates leave it alone.
    last_interaction_date TIMESTAMPTZ NULL,
    streak_day INTEGER NOT NULL DEFAULT 0 CHECK (streak_day >= 0),
    last_emotion TEXT NULL CHECK (last_emotion IN ('interesting', 'boring', 'happy', 'sad', 'neutral')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX friendship_status_level_idx ON friendship_status (friendship_level);
CREATE INDEX friendship_status_last_interaction_idx ON friendship_status (last_interaction_date);
