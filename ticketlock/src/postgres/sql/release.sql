-- Removes a ticket; the conversation row goes with its last ticket, and the
-- new head (if the head changed) is told. True when the ticket was there
-- and live.
--
-- One DELETE drops the ticket and the expired ones together; the head
-- changed when a ticket removed was numbered below the new head (the old
-- head was the lowest number).
CREATE OR REPLACE FUNCTION ticketlock_release(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations;
    v_gone integer;
    v_removed boolean;
    v_lowest bigint;
    v_head bigint;
BEGIN
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id FOR UPDATE;
    IF NOT FOUND OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    WITH gone AS (
        DELETE FROM ticketlock_tickets t
            WHERE t.epoch = c.epoch AND (t.expires < v_now OR t.number = p_number)
            RETURNING t.number, t.expires
    )
    SELECT count(*), coalesce(bool_or(number = p_number AND NOT (v_now > expires)), false),
           min(number)
        INTO v_gone, v_removed, v_lowest FROM gone;
    IF v_gone = 0 THEN
        RETURN false;
    END IF;
    IF c.queued - v_gone <= 0 THEN
        DELETE FROM ticketlock_conversations WHERE epoch = c.epoch;
        RETURN v_removed;
    END IF;
    UPDATE ticketlock_conversations SET queued = c.queued - v_gone WHERE epoch = c.epoch;
    v_head := ticketlock_head(c.epoch);
    IF v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
    RETURN v_removed;
END $$;
