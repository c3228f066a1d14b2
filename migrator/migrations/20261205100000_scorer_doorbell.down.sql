DROP TABLE scorer_doorbell;
