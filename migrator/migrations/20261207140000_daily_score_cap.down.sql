ALTER TABLE friendship_score_history DROP COLUMN score_applied;
ALTER TABLE friendship_status DROP COLUMN daily_gain_date, DROP COLUMN daily_gain;
