-- Acquires with a ticket if it is the first live one (its lease then runs
-- p_lifetime_us from now); otherwise keeps it alive for as long.
-- p_epoch < 0 matches any incarnation (Rasa's API passes numbers only).
-- status 0: acquired (value = fencing token, the same for every answer to
-- one holder); 1: queued (value = tickets ahead, remaining_us = the head's
-- time left, else -1); 2: lost (not in the queue). The answer is one
-- array, {status, value, remaining_us} (see ticketlock_issue_packed).
CREATE OR REPLACE FUNCTION ticketlock_try_acquire_packed(
    p_id text, p_number bigint, p_epoch bigint, p_lifetime_us bigint
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    status integer := 2;
    value bigint;
    remaining_us bigint := -1;
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    c ticketlock_conversations;
    v_pruned integer := 0;
    v_lowest bigint;
    v_at integer;
    v_fence bigint;
    v_head bigint;
    v_head_expires double precision;
BEGIN
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id FOR UPDATE;
    IF NOT FOUND OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN ARRAY[status, value, remaining_us];
    END IF;
    IF c.numbers IS NOT NULL THEN
        -- The queue is in the row.
        IF v_now > ANY (c.ticket_expires) THEN
            SELECT * INTO c.numbers, c.ticket_expires, c.fences, v_pruned, v_lowest
                FROM ticketlock_prune_inline(c.numbers, c.ticket_expires, c.fences, v_now);
        END IF;
        v_at := array_position(c.numbers, p_number);
        IF v_at IS NULL THEN
            IF v_pruned > 0 THEN
                PERFORM ticketlock_settle_inline(c, v_lowest, NULL, v_now);
            END IF;
            RETURN ARRAY[status, value, remaining_us];
        END IF;
        c.ticket_expires[v_at] := v_expires;
        IF v_at = 1 THEN
            IF c.fences[1] IS NULL THEN
                c.fences[1] := nextval('ticketlock_fence');
            END IF;
            status := 0;
            value := c.fences[1];
        ELSE
            status := 1;
            value := v_at - 1;
            remaining_us := ticketlock_remaining_us(c.ticket_expires[1], v_now);
        END IF;
        PERFORM ticketlock_settle_inline(c, CASE WHEN status = 1 THEN v_lowest END, NULL,
                                         v_expires);
        RETURN ARRAY[status, value, remaining_us];
    END IF;
    WITH gone AS (
        DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.expires < v_now
            RETURNING t.number
    ) SELECT count(*), min(gone.number) INTO v_pruned, v_lowest FROM gone;
    UPDATE ticketlock_tickets t SET expires = v_expires
        WHERE t.epoch = c.epoch AND t.number = p_number
        RETURNING t.fence INTO v_fence;
    IF NOT FOUND THEN
        IF v_pruned > 0 THEN
            PERFORM ticketlock_settle(c.digest, c.epoch, c.queued - v_pruned, v_lowest, NULL, v_now);
        END IF;
        RETURN ARRAY[status, value, remaining_us];
    END IF;
    IF v_pruned > 0 OR v_expires > c.expires THEN
        UPDATE ticketlock_conversations
            SET queued = c.queued - v_pruned, expires = greatest(expires, v_expires)
            WHERE digest = c.digest;
    END IF;
    SELECT t.number, t.expires INTO v_head, v_head_expires FROM ticketlock_tickets t
        WHERE t.epoch = c.epoch ORDER BY t.number LIMIT 1;
    IF v_head = p_number THEN
        IF v_fence IS NULL THEN
            v_fence := nextval('ticketlock_fence');
            UPDATE ticketlock_tickets t SET fence = v_fence
                WHERE t.epoch = c.epoch AND t.number = p_number;
        END IF;
        status := 0;
        value := v_fence;
        RETURN ARRAY[status, value, remaining_us];
    END IF;
    IF v_pruned > 0 AND v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
    status := 1;
    SELECT count(*) INTO value FROM ticketlock_tickets t
        WHERE t.epoch = c.epoch AND t.number < p_number;
    remaining_us := ticketlock_remaining_us(v_head_expires, v_now);
    RETURN ARRAY[status, value, remaining_us];
END $$;

-- The answer as the record of version 2 (see
-- ticketlock_issue).
CREATE OR REPLACE FUNCTION ticketlock_try_acquire(
    p_id text, p_number bigint, p_epoch bigint, p_lifetime_us bigint,
    OUT status integer, OUT value bigint, OUT remaining_us bigint
) LANGUAGE sql AS $$
    SELECT a[1]::integer, a[2], a[3]
        FROM (SELECT ticketlock_try_acquire_packed(p_id, p_number, p_epoch, p_lifetime_us) AS a) s
$$;
