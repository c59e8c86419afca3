-- Removes a ticket; the conversation row goes with its last ticket, and the
-- new head (if the head changed) is told. True when the ticket was there
-- and live.
--
-- The uncontended release (the row holds this ticket alone) is one DELETE
-- of the row. Otherwise the ticket and the expired ones go together; the
-- head changed when a ticket removed was numbered below the new head (the
-- old head was the lowest number).
CREATE OR REPLACE FUNCTION ticketlock_release(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_removed boolean;
BEGIN
    -- One variable, and the clock and the digest inside the statement:
    -- each variable and each expression of its own costs every call (see
    -- ticketlock_issue_packed); the rest is in ticketlock_release_queued.
    DELETE FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id
            AND t.numbers = ARRAY[p_number] AND (p_epoch < 0 OR t.epoch = p_epoch)
        RETURNING NOT (ticketlock_now() > t.ticket_expires[1]) INTO v_removed;
    IF FOUND THEN
        RETURN v_removed;
    END IF;
    RETURN ticketlock_release_queued(p_id, p_number, p_epoch);
END $$;

-- The release when the row holds other tickets too (or not this one).
CREATE OR REPLACE FUNCTION ticketlock_release_queued(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations;
    v_gone integer;
    v_removed boolean;
    v_lowest bigint;
    v_at integer;
    v_head bigint;
BEGIN
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id FOR UPDATE;
    IF NOT FOUND OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    IF c.numbers IS NOT NULL THEN
        -- The queue is in the row.
        v_at := array_position(c.numbers, p_number);
        v_gone := 0;
        v_removed := false;
        IF v_at IS NOT NULL THEN
            v_removed := NOT (v_now > c.ticket_expires[v_at]);
            c.numbers := c.numbers[:v_at - 1] || c.numbers[v_at + 1:];
            c.ticket_expires := c.ticket_expires[:v_at - 1] || c.ticket_expires[v_at + 1:];
            c.fences := c.fences[:v_at - 1] || c.fences[v_at + 1:];
        END IF;
        IF v_now > ANY (c.ticket_expires) THEN
            SELECT * INTO c.numbers, c.ticket_expires, c.fences, v_gone, v_lowest
                FROM ticketlock_prune_inline(c.numbers, c.ticket_expires, c.fences, v_now);
        END IF;
        IF v_at IS NOT NULL THEN
            v_gone := v_gone + 1;
            v_lowest := least(v_lowest, p_number);
        END IF;
        IF v_gone = 0 THEN
            RETURN false;
        END IF;
        PERFORM ticketlock_settle_inline(c, v_lowest, NULL, v_now);
        RETURN v_removed;
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
        DELETE FROM ticketlock_conversations WHERE digest = c.digest;
        RETURN v_removed;
    END IF;
    UPDATE ticketlock_conversations SET queued = c.queued - v_gone WHERE digest = c.digest;
    v_head := ticketlock_head(c.epoch);
    IF v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
    RETURN v_removed;
END $$;
