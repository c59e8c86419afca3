-- Replaces the conversation's tickets (Rasa's save_lock), keeping what
-- must survive a rewrite: the highest number issued, the epoch, and the
-- fencing token of a ticket that stays. No ticket: the row goes. Everyone
-- waiting is told to look again ('*'). The tickets saved go to
-- ticketlock_tickets (a queue in the row moves there first).
CREATE OR REPLACE FUNCTION ticketlock_save(
    p_id text, p_numbers bigint[], p_expires double precision[], p_last_issued bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c ticketlock_conversations := ticketlock_find(p_id);
    v_issued bigint;
    v_last double precision;
BEGIN
    IF cardinality(p_numbers) = 0 THEN
        IF c.epoch IS NOT NULL THEN
            DELETE FROM ticketlock_conversations WHERE digest = c.digest;
            DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch;
            PERFORM pg_notify('ticketlock', c.epoch || ' *');
        END IF;
        RETURN;
    END IF;
    SELECT greatest(max(n), p_last_issued) INTO v_issued FROM unnest(p_numbers) n;
    SELECT max(e) INTO v_last FROM unnest(p_expires) e;
    IF c.epoch IS NULL THEN
        INSERT INTO ticketlock_conversations
                (epoch, digest, conversation_id, last_issued, queued, expires)
            VALUES (nextval('ticketlock_fence'), ticketlock_digest(p_id), p_id, v_issued,
                    cardinality(p_numbers), v_last)
            RETURNING * INTO c;
    ELSE
        IF c.numbers IS NOT NULL THEN
            PERFORM ticketlock_spill(c);
        END IF;
        DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.number <> ALL (p_numbers);
        UPDATE ticketlock_conversations
            SET last_issued = greatest(last_issued, v_issued), queued = cardinality(p_numbers),
                expires = greatest(expires, v_last)
            WHERE digest = c.digest;
    END IF;
    INSERT INTO ticketlock_tickets AS t (epoch, number, expires)
        SELECT c.epoch, n, e FROM unnest(p_numbers, p_expires) AS u(n, e)
        ON CONFLICT (epoch, number) DO UPDATE SET expires = excluded.expires;
    PERFORM pg_notify('ticketlock', c.epoch || ' *');
END $$;
