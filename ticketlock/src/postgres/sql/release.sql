-- Removes a ticket; the conversation row goes with its last ticket, and the
-- new head (if the head changed) is told. True when the ticket was there
-- and live.
CREATE OR REPLACE FUNCTION ticketlock_release(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations := ticketlock_find(p_id);
    v_old_head bigint;
    v_pruned integer;
    v_removed boolean;
BEGIN
    IF c.epoch IS NULL OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    v_old_head := ticketlock_head(c.epoch);
    v_pruned := ticketlock_prune(c.epoch, v_now);
    DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.number = p_number;
    v_removed := FOUND;
    IF v_removed OR v_pruned > 0 THEN
        PERFORM ticketlock_settle(
            c.epoch, c.queued - v_pruned - v_removed::integer, v_old_head, NULL, v_now);
    END IF;
    RETURN v_removed;
END $$;
