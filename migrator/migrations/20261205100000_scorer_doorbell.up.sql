-- Whether a doorbell is on its way to a scorer wake-up that has not started
-- yet. A conversation end, once its event has committed, sets `rung_at` and
-- publishes the doorbell only when it was unset (or older than the bound
-- the service passes, for when no scorer runs); each scorer wake-up unsets
-- it before it claims anything. Kept in Postgres, next to the events, so
-- that the conversation end needs no Redis connection unless it publishes.
-- One row, always.
CREATE TABLE scorer_doorbell (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    rung_at TIMESTAMPTZ
);
INSERT INTO scorer_doorbell (only_row) VALUES (TRUE);
