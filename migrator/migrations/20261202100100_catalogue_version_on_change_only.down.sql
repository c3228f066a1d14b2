DROP TRIGGER friendship_agent_mapping_inserted ON friendship_agent_mapping;
DROP TRIGGER friendship_agent_mapping_updated ON friendship_agent_mapping;
DROP TRIGGER friendship_agent_mapping_deleted ON friendship_agent_mapping;
DROP FUNCTION bump_catalogue_version_if_changed();

CREATE TRIGGER friendship_agent_mapping_bump_catalogue_version
    AFTER INSERT OR UPDATE OR DELETE ON friendship_agent_mapping
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalogue_version();
