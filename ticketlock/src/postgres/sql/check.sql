-- Whether a ticket is the first live one. Reads only (no row lock: the
-- snapshot of one statement is consistent).
CREATE OR REPLACE FUNCTION ticketlock_check(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
BEGIN
    RETURN coalesce((
        SELECT CASE WHEN c.numbers IS NOT NULL THEN
            (SELECT u.n = p_number FROM unnest(c.numbers, c.ticket_expires) AS u(n, e)
                WHERE NOT (v_now > u.e) ORDER BY u.n LIMIT 1)
        ELSE
            (SELECT t.number = p_number FROM ticketlock_tickets t
                WHERE t.epoch = c.epoch AND NOT (v_now > t.expires)
                ORDER BY t.number LIMIT 1)
        END
        FROM ticketlock_conversations c
        WHERE c.digest = ticketlock_digest(p_id) AND c.conversation_id = p_id
            AND (p_epoch < 0 OR c.epoch = p_epoch)
    ), false);
END $$;
