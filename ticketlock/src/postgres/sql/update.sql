-- Removes the expired tickets (Rasa's update_lock), dropping the row when
-- none is left. Returns how many went.
CREATE OR REPLACE FUNCTION ticketlock_update(p_id text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations := ticketlock_find(p_id);
    v_pruned integer := 0;
    v_lowest bigint;
BEGIN
    IF c.epoch IS NULL THEN
        RETURN 0;
    END IF;
    IF c.numbers IS NOT NULL THEN
        -- The queue is in the row.
        IF v_now > ANY (c.ticket_expires) THEN
            SELECT * INTO c.numbers, c.ticket_expires, c.fences, v_pruned, v_lowest
                FROM ticketlock_prune_inline(c.numbers, c.ticket_expires, c.fences, v_now);
            PERFORM ticketlock_settle_inline(c, v_lowest, NULL, v_now);
        END IF;
        RETURN v_pruned;
    END IF;
    SELECT * INTO v_pruned, v_lowest FROM ticketlock_prune(c.epoch, v_now);
    IF v_pruned > 0 THEN
        PERFORM ticketlock_settle(c.digest, c.epoch, c.queued - v_pruned, v_lowest, NULL, v_now);
    END IF;
    RETURN v_pruned;
END $$;
