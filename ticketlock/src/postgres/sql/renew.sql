-- Extends the holder's lease to p_lifetime_us from now, if it is still the
-- first live ticket (a lease that ran out is lost, even if nobody entered
-- since). True when renewed.
CREATE OR REPLACE FUNCTION ticketlock_renew(
    p_id text, p_number bigint, p_epoch bigint, p_lifetime_us bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    c ticketlock_conversations := ticketlock_find(p_id);
    v_pruned integer := 0;
    v_lowest bigint;
    v_renewed boolean := false;
BEGIN
    IF c.epoch IS NULL OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    IF c.numbers IS NOT NULL THEN
        -- The queue is in the row.
        IF v_now > ANY (c.ticket_expires) THEN
            SELECT * INTO c.numbers, c.ticket_expires, c.fences, v_pruned, v_lowest
                FROM ticketlock_prune_inline(c.numbers, c.ticket_expires, c.fences, v_now);
        END IF;
        IF c.numbers[1] = p_number THEN
            c.ticket_expires[1] := v_expires;
            v_renewed := true;
        END IF;
        IF v_pruned > 0 OR v_renewed THEN
            PERFORM ticketlock_settle_inline(c, v_lowest, p_number,
                CASE WHEN v_renewed THEN v_expires ELSE v_now END);
        END IF;
        RETURN v_renewed;
    END IF;
    SELECT * INTO v_pruned, v_lowest FROM ticketlock_prune(c.epoch, v_now);
    IF ticketlock_head(c.epoch) = p_number THEN
        UPDATE ticketlock_tickets t SET expires = v_expires
            WHERE t.epoch = c.epoch AND t.number = p_number;
        v_renewed := true;
    END IF;
    IF v_pruned > 0 OR (v_renewed AND v_expires > c.expires) THEN
        PERFORM ticketlock_settle(c.digest, c.epoch, c.queued - v_pruned, v_lowest, p_number,
            CASE WHEN v_renewed THEN v_expires ELSE v_now END);
    END IF;
    RETURN v_renewed;
END $$;
