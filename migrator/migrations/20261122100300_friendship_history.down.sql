DROP TABLE friendship_level_transitions;
DROP TABLE friendship_score_history;
