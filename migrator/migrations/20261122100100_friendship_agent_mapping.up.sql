-- The agent catalogue: which agents may open and carry a conversation at each level.
CREATE TABLE friendship_agent_mapping (
    id BIGSERIAL PRIMARY KEY,
    friendship_level TEXT NOT NULL CHECK (friendship_level IN ('stranger', 'acquaintance', 'friend')),
    agent_type TEXT NOT NULL CHECK (agent_type IN ('greeting', 'talk', 'game')),
    agent_id TEXT NOT NULL CHECK (char_length(agent_id) BETWEEN 1 AND 128),
    agent_name TEXT NOT NULL CHECK (char_length(agent_name) BETWEEN 1 AND 200),
    agent_description TEXT NOT NULL DEFAULT '' CHECK (char_length(agent_description) <= 2000),
    weight DOUBLE PRECISION NOT NULL CHECK (weight > 0 AND weight <= 1000),
    is_active BOOLEAN NOT NULL DEFAULT true,
    -- NULL marks a general greeting, chosen when no triggered rule applies.
    greeting_trigger TEXT NULL CHECK (greeting_trigger IS NULL OR greeting_trigger IN (
        'birthday', 'returning', 'memory_recall',
        'emotion:interesting', 'emotion:boring', 'emotion:happy', 'emotion:sad', 'emotion:neutral'
    )),
    topic TEXT NULL CHECK (topic IS NULL OR char_length(topic) BETWEEN 1 AND 64),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT friendship_agent_mapping_trigger_needs_greeting
        CHECK (agent_type = 'greeting' OR greeting_trigger IS NULL),
    -- Talk agents cover exactly one topic; other agents none.
    CONSTRAINT friendship_agent_mapping_topic_iff_talk
        CHECK ((agent_type = 'talk') = (topic IS NOT NULL)),
    -- Counts inactive (soft-deleted) mappings too: reactivate rather than duplicate.
    CONSTRAINT friendship_agent_mapping_unique UNIQUE (friendship_level, agent_type, agent_id)
);

CREATE INDEX friendship_agent_mapping_level_idx ON friendship_agent_mapping (friendship_level);
CREATE INDEX friendship_agent_mapping_type_idx ON friendship_agent_mapping (agent_type);
CREATE INDEX friendship_agent_mapping_active_idx ON friendship_agent_mapping (is_active);
CREATE INDEX friendship_agent_mapping_active_level_type_idx
    ON friendship_agent_mapping (friendship_level, agent_type) WHERE is_active;

-- A singleton counter that cached candidates carry: a cached record computed from an
-- older version is stale. Every statement that touches the catalogue bumps it, even one
-- that changes no row, so writers that want no bump must skip the statement.
CREATE TABLE catalogue_version (
    id BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    version BIGINT NOT NULL
);

INSERT INTO catalogue_version (id, version) VALUES (true, 1);

CREATE FUNCTION bump_catalogue_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_version SET version = version + 1 WHERE id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER friendship_agent_mapping_bump_catalogue_version
    AFTER INSERT OR UPDATE OR DELETE ON friendship_agent_mapping
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version();
