-- Removes the expired tickets (Rasa's update_lock), dropping the row when
-- none is left. Returns how many went.
CREATE OR REPLACE FUNCTION ticketlock_update(p_id text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations := ticketlock_find(p_id);
    v_pruned integer;
    v_lowest bigint;
BEGIN
    IF c.epoch IS NULL THEN
        RETURN 0;
    END IF;
    SELECT * INTO v_pruned, v_lowest FROM ticketlock_prune(c.epoch, v_now);
    IF v_pruned > 0 THEN
        PERFORM ticketlock_settle(c.epoch, c.queued - v_pruned, v_lowest, NULL, v_now);
    END IF;
    RETURN v_pruned;
END $$;
