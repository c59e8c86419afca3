-- Appends a ticket alive for p_lifetime_us and tries to acquire with it.
-- status 0: acquired (value = fencing token); 1: queued (value = tickets
-- ahead, remaining_us = the head's time left); 2: the queue already holds
-- p_max live tickets (value = its length; no ticket was issued).
CREATE OR REPLACE FUNCTION ticketlock_issue(
    p_id text, p_lifetime_us bigint, p_max integer,
    OUT number bigint, OUT epoch bigint, OUT status integer, OUT value bigint,
    OUT remaining_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    c ticketlock_conversations;
    v_old_head bigint;
    v_pruned integer;
    v_head_expires double precision;
BEGIN
    remaining_us := -1;
    FOR attempt IN 1..5 LOOP
        c := ticketlock_find(p_id);
        EXIT WHEN c.epoch IS NOT NULL;
        -- A new incarnation: the first ticket holds at once.
        INSERT INTO ticketlock_conversations AS t
            VALUES (nextval('ticketlock_fence'), ticketlock_digest(p_id), p_id, 0, 1, v_expires)
            ON CONFLICT (digest) DO NOTHING
            RETURNING t.epoch INTO epoch;
        IF FOUND THEN
            PERFORM ticketlock_sweep(v_now, ticketlock_digest(p_id));
            number := 0;
            status := 0;
            value := nextval('ticketlock_fence');
            INSERT INTO ticketlock_tickets VALUES (epoch, 0, v_expires, value);
            RETURN;
        END IF;
        -- Another transaction made it first: lock that one.
    END LOOP;
    IF c.epoch IS NULL THEN
        RAISE EXCEPTION 'ticketlock: the conversation row kept vanishing; retry';
    END IF;
    epoch := c.epoch;
    v_old_head := ticketlock_head(c.epoch);
    v_pruned := ticketlock_prune(c.epoch, v_now);
    c.queued := c.queued - v_pruned;
    IF c.queued >= p_max THEN
        IF v_pruned > 0 THEN
            PERFORM ticketlock_settle(c.epoch, c.queued, v_old_head, NULL, v_now);
        END IF;
        number := -1;
        status := 2;
        value := c.queued;
        RETURN;
    END IF;
    number := c.last_issued + 1;
    UPDATE ticketlock_conversations
        SET last_issued = number, queued = c.queued + 1, expires = greatest(expires, v_expires)
        WHERE ticketlock_conversations.epoch = c.epoch;
    IF c.queued = 0 THEN
        status := 0;
        value := nextval('ticketlock_fence');
        INSERT INTO ticketlock_tickets VALUES (c.epoch, number, v_expires, value);
        RETURN;
    END IF;
    INSERT INTO ticketlock_tickets VALUES (c.epoch, number, v_expires, NULL);
    status := 1;
    value := c.queued;
    SELECT t.expires INTO v_head_expires FROM ticketlock_tickets t
        WHERE t.epoch = c.epoch ORDER BY t.number LIMIT 1;
    remaining_us := ticketlock_remaining_us(v_head_expires, v_now);
    IF v_pruned > 0 THEN
        PERFORM ticketlock_settle(c.epoch, c.queued + 1, v_old_head, NULL, v_expires);
    END IF;
END $$;
