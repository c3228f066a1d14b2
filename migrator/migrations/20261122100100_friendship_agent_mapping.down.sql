DROP TRIGGER friendship_agent_mapping_bump_catalogue_version ON friendship_agent_mapping;
DROP FUNCTION bump_catalogue_version();
DROP TABLE catalogue_version;
DROP TABLE friendship_agent_mapping;
