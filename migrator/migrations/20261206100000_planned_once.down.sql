DROP FUNCTION record_events(TEXT);
DROP FUNCTION suggestion_inputs(TEXT);
