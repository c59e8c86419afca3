-- Appends a ticket alive for p_lifetime_us and tries to acquire with it.
-- The answer is one array, {number, epoch, status, value, remaining_us}:
-- status 0: acquired (value = fencing token); 1: queued (value = tickets
-- ahead, remaining_us = the head's time left, else -1); 2: the queue
-- already holds p_max live tickets (value = its length; no ticket was
-- issued). An array called in the select list, not OUT parameters read
-- with `SELECT ... FROM`: a function in FROM fills a tuplestore and looks
-- its record type up on every call, about a fifth of the server's work
-- for an uncontended lock and release.
--
-- A conversation without a row gets one holding its first ticket, which
-- holds at once with the row's epoch as its fencing token (both drawn
-- once from ticketlock_fence, above every token given before): the
-- uncontended lock writes this one row. The head changed by pruning when a
-- ticket pruned was numbered below the head left (the old head was the
-- lowest number).
CREATE OR REPLACE FUNCTION ticketlock_issue_packed(p_id text, p_lifetime_us bigint, p_max integer)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    -- When the row is there, the value drawn is skipped.
    v_fence bigint := nextval('ticketlock_fence');
BEGIN
    -- A new incarnation, the uncontended case: the first ticket holds at
    -- once. Few variables and no row variable here: each costs every call
    -- (a row variable sets up an expanded record); the rest is in
    -- ticketlock_issue_queued.
    INSERT INTO ticketlock_conversations AS t
            (epoch, digest, conversation_id, last_issued, queued, expires,
             numbers, ticket_expires, fences)
        VALUES (v_fence, ticketlock_digest(p_id), p_id, 0, 1, v_expires,
                ARRAY[0::bigint], ARRAY[v_expires], ARRAY[v_fence])
        ON CONFLICT (digest) DO NOTHING;
    IF FOUND THEN
        -- At every 32nd new row, rows nobody came back to go (see
        -- common.sql): they cannot pile up faster than they are made.
        IF nextval('ticketlock_sweeps') = 32 THEN
            PERFORM ticketlock_sweep(v_now, ticketlock_digest(p_id));
        END IF;
        RETURN ARRAY[0, v_fence, 0, v_fence, -1];
    END IF;
    RETURN ticketlock_issue_queued(p_id, p_lifetime_us, p_max);
END $$;

-- The issue when the conversation's row was there (see above): locks it
-- and queues, or makes the row anew if it went in between.
CREATE OR REPLACE FUNCTION ticketlock_issue_queued(p_id text, p_lifetime_us bigint, p_max integer)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
    epoch bigint;
    status integer;
    value bigint;
    remaining_us bigint := -1;
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    v_digest bytea := ticketlock_digest(p_id);
    c ticketlock_conversations;
    v_pruned integer := 0;
    v_lowest bigint;
    v_queued integer;
    v_fence bigint;
    v_head bigint;
    v_head_expires double precision;
BEGIN
    FOR attempt IN 1..5 LOOP
        IF attempt > 1 THEN
            -- The row went after the caller found it there: make it anew
            -- as ticketlock_issue_packed does.
            value := nextval('ticketlock_fence');
            INSERT INTO ticketlock_conversations AS t
                    (epoch, digest, conversation_id, last_issued, queued, expires,
                     numbers, ticket_expires, fences)
                VALUES (value, v_digest, p_id, 0, 1, v_expires,
                        ARRAY[0::bigint], ARRAY[v_expires], ARRAY[value])
                ON CONFLICT (digest) DO NOTHING;
            IF FOUND THEN
                IF nextval('ticketlock_sweeps') = 32 THEN
                    PERFORM ticketlock_sweep(v_now, v_digest);
                END IF;
                RETURN ARRAY[0, value, 0, value, -1];
            END IF;
        END IF;
        SELECT * INTO c FROM ticketlock_conversations t
            WHERE t.digest = v_digest AND t.conversation_id = p_id FOR UPDATE;
        EXIT WHEN FOUND;
        -- Gone again before it could be locked (or the id shares a digest
        -- with another: then the loop ends below): make it anew.
    END LOOP;
    IF c.epoch IS NULL THEN
        RAISE EXCEPTION 'ticketlock: CORRUPT the conversation row of this id cannot be found or made (two ids share a SHA-256 digest?)';
    END IF;
    epoch := c.epoch;
    number := c.last_issued + 1;
    IF c.numbers IS NOT NULL THEN
        -- The queue is in the row.
        IF v_now > ANY (c.ticket_expires) THEN
            SELECT * INTO c.numbers, c.ticket_expires, c.fences, v_pruned, v_lowest
                FROM ticketlock_prune_inline(c.numbers, c.ticket_expires, c.fences, v_now);
        END IF;
        v_queued := cardinality(c.numbers);
        IF v_queued >= p_max THEN
            IF v_pruned > 0 THEN
                PERFORM ticketlock_settle_inline(c, v_lowest, NULL, v_now);
            END IF;
            number := -1;
            status := 2;
            value := v_queued;
            RETURN ARRAY[number, epoch, status, value, remaining_us];
        END IF;
        IF v_queued < ticketlock_inline() THEN
            IF v_queued = 0 THEN
                v_fence := nextval('ticketlock_fence');
                status := 0;
                value := v_fence;
            ELSE
                status := 1;
                value := v_queued;
                remaining_us := ticketlock_remaining_us(c.ticket_expires[1], v_now);
            END IF;
            UPDATE ticketlock_conversations
                SET last_issued = number, queued = v_queued + 1,
                    expires = greatest(expires, v_expires),
                    numbers = c.numbers || number,
                    ticket_expires = c.ticket_expires || v_expires,
                    fences = c.fences || v_fence
                WHERE digest = v_digest;
            IF v_pruned > 0 AND v_queued > 0 AND v_lowest < c.numbers[1] THEN
                PERFORM pg_notify('ticketlock', c.epoch || ' ' || c.numbers[1]);
            END IF;
            RETURN ARRAY[number, epoch, status, value, remaining_us];
        END IF;
        -- The queue outgrows the row: its live tickets move to
        -- ticketlock_tickets, and the new one joins them below.
        PERFORM ticketlock_spill(c);
        c.queued := v_queued;
    ELSE
        WITH gone AS (
            DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.expires < v_now
                RETURNING t.number
        ) SELECT count(*), min(gone.number) INTO v_pruned, v_lowest FROM gone;
        v_queued := c.queued - v_pruned;
        IF v_queued >= p_max THEN
            IF v_pruned > 0 THEN
                PERFORM ticketlock_settle(v_digest, c.epoch, v_queued, v_lowest, NULL, v_now);
            END IF;
            number := -1;
            status := 2;
            value := v_queued;
            RETURN ARRAY[number, epoch, status, value, remaining_us];
        END IF;
    END IF;
    UPDATE ticketlock_conversations
        SET last_issued = number, queued = v_queued + 1, expires = greatest(expires, v_expires)
        WHERE digest = v_digest;
    IF v_queued = 0 THEN
        status := 0;
        value := nextval('ticketlock_fence');
        INSERT INTO ticketlock_tickets VALUES (c.epoch, number, v_expires, value);
        RETURN ARRAY[number, epoch, status, value, remaining_us];
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
    RETURN ARRAY[number, epoch, status, value, remaining_us];
END $$;

-- The answer as the record of version 2, for processes of a version 2
-- build still running during an upgrade (an inlined SQL wrapper).
CREATE OR REPLACE FUNCTION ticketlock_issue(
    p_id text, p_lifetime_us bigint, p_max integer,
    OUT number bigint, OUT epoch bigint, OUT status integer, OUT value bigint,
    OUT remaining_us bigint
) LANGUAGE sql AS $$
    SELECT a[1], a[2], a[3]::integer, a[4], a[5]
        FROM (SELECT ticketlock_issue_packed(p_id, p_lifetime_us, p_max) AS a) s
$$;
