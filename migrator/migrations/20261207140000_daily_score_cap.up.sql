-- The daily score cap (`daily_score_cap`): what conversations added to a
-- user's score on its last UTC day of gain, spent and checked by
-- friendship::APPLY_CHANGES on the locked row. Another day counts as 0, so
-- nothing resets it: the first conversation of a new day starts it again.
ALTER TABLE friendship_status
    ADD COLUMN daily_gain NUMERIC NOT NULL DEFAULT 0 CHECK (daily_gain >= 0),
    ADD COLUMN daily_gain_date DATE NULL;

-- Each history line keeps the change asked for (score_change) and the change
-- the cap let through (score_applied); score_after = max(0, score_before +
-- score_applied). Lines written before the cap existed applied what they asked.
ALTER TABLE friendship_score_history ADD COLUMN score_applied NUMERIC NULL;
UPDATE friendship_score_history SET score_applied = score_change;
ALTER TABLE friendship_score_history ALTER COLUMN score_applied SET NOT NULL;
