-- The catalogue version moves only when a statement changed at least one mapping.
-- Before, every statement bumped it, even an UPDATE of an unknown id (a PUT or
-- DELETE answered 404), and every cached candidate record became a miss.
-- Transition tables tell whether rows changed; PostgreSQL allows them only on
-- single-event triggers, hence one trigger per event, all named `changed`.
DROP TRIGGER friendship_agent_mapping_bump_catalogue_version ON friendship_agent_mapping;

CREATE FUNCTION bump_catalogue_version_if_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        UPDATE catalogue_version SET version = version + 1 WHERE id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER friendship_agent_mapping_inserted
    AFTER INSERT ON friendship_agent_mapping REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version_if_changed();
CREATE TRIGGER friendship_agent_mapping_updated
    AFTER UPDATE ON friendship_agent_mapping REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version_if_changed();
CREATE TRIGGER friendship_agent_mapping_deleted
    AFTER DELETE ON friendship_agent_mapping REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version_if_changed();
