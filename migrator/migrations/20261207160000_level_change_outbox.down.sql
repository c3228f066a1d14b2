DROP TABLE level_change_outbox;
