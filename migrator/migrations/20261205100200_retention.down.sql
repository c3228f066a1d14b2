-- The keys of pruned events are lost: a conversation_id resent after this
-- down migration is recorded and scored as new. History lines of pruned
-- events name events that no longer exist, so the foreign key comes back
-- NOT VALID: checked for new lines only.
ALTER TABLE friendship_score_history
    ADD CONSTRAINT friendship_score_history_processing_id_fkey
    FOREIGN KEY (processing_id) REFERENCES conversation_events (processing_id) NOT VALID;
DROP INDEX conversation_events_processed_idx;
DROP TABLE pruned_conversations;
