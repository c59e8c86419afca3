-- Appends a ticket alive for p_lifetime_us and tries to acquire with it.
-- status 0: acquired (value = fencing token); 1: queued (value = tickets
-- ahead, remaining_us = the head's time left); 2: the queue already holds
-- p_max live tickets (value = its length; no ticket was issued).
--
-- The head changed by pruning when a ticket pruned was numbered below the
-- head left (the old head was the lowest number).
CREATE OR REPLACE FUNCTION ticketlock_issue(
    p_id text, p_lifetime_us bigint, p_max integer,
    OUT number bigint, OUT epoch bigint, OUT status integer, OUT value bigint,
    OUT remaining_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    v_digest bytea := ticketlock_digest(p_id);
    c ticketlock_conversations;
    v_pruned integer;
    v_lowest bigint;
    v_queued integer;
    v_head bigint;
    v_head_expires double precision;
BEGIN
    remaining_us := -1;
    FOR attempt IN 1..5 LOOP
        SELECT * INTO c FROM ticketlock_conversations t
            WHERE t.digest = v_digest AND t.conversation_id = p_id FOR UPDATE;
        EXIT WHEN FOUND;
        -- A new incarnation: the first ticket holds at once.
        INSERT INTO ticketlock_conversations AS t
            VALUES (nextval('ticketlock_fence'), v_digest, p_id, 0, 1, v_expires)
            ON CONFLICT (digest) DO NOTHING
            RETURNING t.epoch INTO epoch;
        IF FOUND THEN
            -- At every eighth new row, rows nobody came back to go (see
            -- common.sql): they cannot pile up faster than they are made.
            IF nextval('ticketlock_sweeps') = 8 THEN
                PERFORM ticketlock_sweep(v_now, v_digest);
            END IF;
            number := 0;
            status := 0;
            value := nextval('ticketlock_fence');
            INSERT INTO ticketlock_tickets VALUES (epoch, 0, v_expires, value);
            RETURN;
        END IF;
        -- Another transaction made it first (or the id shares a digest
        -- with another: then the loop ends below): lock that one.
    END LOOP;
    IF c.epoch IS NULL THEN
        RAISE EXCEPTION 'ticketlock: CORRUPT the conversation row of this id cannot be found or made (two ids share a SHA-256 digest?)';
    END IF;
    epoch := c.epoch;
    WITH gone AS (
        DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.expires < v_now
            RETURNING t.number
    ) SELECT count(*), min(gone.number) INTO v_pruned, v_lowest FROM gone;
    v_queued := c.queued - v_pruned;
    IF v_queued >= p_max THEN
        IF v_pruned > 0 THEN
            PERFORM ticketlock_settle(c.epoch, v_queued, v_lowest, NULL, v_now);
        END IF;
        number := -1;
        status := 2;
        value := v_queued;
        RETURN;
    END IF;
    number := c.last_issued + 1;
    UPDATE ticketlock_conversations
        SET last_issued = number, queued = v_queued + 1, expires = greatest(expires, v_expires)
        WHERE ticketlock_conversations.epoch = c.epoch;
    IF v_queued = 0 THEN
        status := 0;
        value := nextval('ticketlock_fence');
        INSERT INTO ticketlock_tickets VALUES (c.epoch, number, v_expires, value);
        RETURN;
    END IF;
    INSERT INTO ticketlock_tickets VALUES (c.epoch, number, v_expires, NULL);
    status := 1;
    value := v_queued;
    SELECT t.number, t.expires INTO v_head, v_head_expires FROM ticketlock_tickets t
        WHERE t.epoch = c.epoch ORDER BY t.number LIMIT 1;
    remaining_us := ticketlock_remaining_us(v_head_expires, v_now);
    IF v_pruned > 0 AND v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
END $$;
