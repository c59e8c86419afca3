-- Whether a ticket is the first live one. Reads only (no row lock: the
-- snapshot of one statement is consistent).
CREATE OR REPLACE FUNCTION ticketlock_check(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN coalesce((
        SELECT t.number = p_number
        FROM ticketlock_conversations c
        JOIN ticketlock_tickets t ON t.epoch = c.epoch
        WHERE c.digest = ticketlock_digest(p_id) AND c.conversation_id = p_id
            AND (p_epoch < 0 OR c.epoch = p_epoch)
            AND NOT (ticketlock_now() > t.expires)
        ORDER BY t.number LIMIT 1
    ), false);
END $$;
