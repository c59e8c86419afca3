-- Helpers of the operations: the clock, finding a conversation, pruning and
-- settling a queue after tickets went, in either of its two places (the
-- conversation row's arrays, or ticketlock_tickets). A ticket expires when
-- now > expires, as in Rasa.

-- The server's clock in Unix seconds (every expiry is by this clock).
CREATE OR REPLACE FUNCTION ticketlock_now() RETURNS double precision
LANGUAGE sql VOLATILE AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

-- The key of a conversation's row. STABLE, as convert_to is: a function
-- declared IMMUTABLE over a STABLE body is not inlined, and a SQL function
-- run on its own costs as much as a statement.
CREATE OR REPLACE FUNCTION ticketlock_digest(p_id text) RETURNS bytea
LANGUAGE sql STABLE AS $$ SELECT sha256(convert_to(p_id, 'UTF8')) $$;

-- The most tickets a conversation row holds itself; a longer queue moves
-- to ticketlock_tickets (a plain constant: inlined).
CREATE OR REPLACE FUNCTION ticketlock_inline() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;

-- The conversation's row, locked for the rest of the transaction (NULL
-- epoch when there is none): every operation on one conversation is
-- serialized on this row lock.
CREATE OR REPLACE FUNCTION ticketlock_find(p_id text) RETURNS ticketlock_conversations
LANGUAGE plpgsql AS $$
DECLARE
    c ticketlock_conversations;
BEGIN
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) FOR UPDATE;
    IF FOUND AND c.conversation_id <> p_id THEN
        RAISE EXCEPTION 'ticketlock: CORRUPT two conversation ids share a SHA-256 digest';
    END IF;
    RETURN c;
END $$;

-- The helpers are PL/pgSQL, not SQL functions: PL/pgSQL keeps each
-- statement's plan for the session, where a SQL function that cannot be
-- inlined is planned again on every call.

-- The number of the first ticket of a queue in ticketlock_tickets, or NULL.
CREATE OR REPLACE FUNCTION ticketlock_head(p_epoch bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT t.number FROM ticketlock_tickets t
            WHERE t.epoch = p_epoch ORDER BY t.number LIMIT 1);
END $$;

-- For a queue in ticketlock_tickets, after tickets went (the lowest number
-- removed: p_lowest): stores the count and the expiry bound, drops the
-- conversation when no ticket is left, and tells the new head when the
-- head changed, i.e. when a ticket below it went (the old head was the
-- lowest number), unless it is p_quiet, the caller entering now. NOTIFY is
-- delivered at commit, so a woken waiter sees this change.
CREATE OR REPLACE FUNCTION ticketlock_settle(
    p_digest bytea, p_epoch bigint, p_queued integer, p_lowest bigint, p_quiet bigint,
    p_expires double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_head bigint;
BEGIN
    IF p_queued <= 0 THEN
        DELETE FROM ticketlock_conversations WHERE digest = p_digest;
        DELETE FROM ticketlock_tickets WHERE epoch = p_epoch;
        RETURN;
    END IF;
    UPDATE ticketlock_conversations
        SET queued = p_queued, expires = greatest(expires, p_expires)
        WHERE digest = p_digest;
    v_head := ticketlock_head(p_epoch);
    IF p_lowest < v_head AND v_head IS DISTINCT FROM p_quiet THEN
        PERFORM pg_notify('ticketlock', p_epoch || ' ' || v_head);
    END IF;
END $$;

-- The same for a queue in the row: c holds the tickets left.
CREATE OR REPLACE FUNCTION ticketlock_settle_inline(
    c ticketlock_conversations, p_lowest bigint, p_quiet bigint, p_expires double precision
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(c.numbers), 0) = 0 THEN
        DELETE FROM ticketlock_conversations WHERE digest = c.digest;
        RETURN;
    END IF;
    UPDATE ticketlock_conversations
        SET numbers = c.numbers, ticket_expires = c.ticket_expires, fences = c.fences,
            queued = cardinality(c.numbers), expires = greatest(expires, p_expires)
        WHERE digest = c.digest;
    IF p_lowest < c.numbers[1] AND c.numbers[1] IS DISTINCT FROM p_quiet THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || c.numbers[1]);
    END IF;
END $$;

-- Drops the expired tickets of a queue in ticketlock_tickets; returns how
-- many went and the lowest number among them.
CREATE OR REPLACE FUNCTION ticketlock_prune(
    p_epoch bigint, p_now double precision, OUT gone integer, OUT lowest bigint
) LANGUAGE plpgsql AS $$
BEGIN
    WITH g AS (
        DELETE FROM ticketlock_tickets t WHERE t.epoch = p_epoch AND t.expires < p_now
            RETURNING t.number
    ) SELECT count(*), min(g.number) INTO gone, lowest FROM g;
END $$;

-- Drops the expired tickets of a queue in the row's arrays (in memory; the
-- caller writes the row): the arrays left, how many went and the lowest
-- number among them. Callers test `p_now > ANY (ticket_expires)` first.
CREATE OR REPLACE FUNCTION ticketlock_prune_inline(
    INOUT numbers bigint[], INOUT expires double precision[], INOUT fences bigint[],
    p_now double precision, OUT gone integer, OUT lowest bigint
) LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n bigint[] := '{}';
    e double precision[] := '{}';
    f bigint[] := '{}';
BEGIN
    gone := 0;
    FOR i IN 1..coalesce(cardinality(numbers), 0) LOOP
        IF p_now > expires[i] THEN
            gone := gone + 1;
            lowest := least(lowest, numbers[i]);
        ELSE
            n := n || numbers[i];
            e := e || expires[i];
            f := f || fences[i];
        END IF;
    END LOOP;
    numbers := n;
    expires := e;
    fences := f;
END $$;

-- Moves a queue from the row's arrays to ticketlock_tickets (the caller
-- then clears the arrays with its own update of the row).
CREATE OR REPLACE FUNCTION ticketlock_spill(c ticketlock_conversations)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ticketlock_tickets (epoch, number, expires, fence)
        SELECT c.epoch, u.n, u.e, u.f FROM unnest(c.numbers, c.ticket_expires, c.fences) AS u(n, e, f);
    UPDATE ticketlock_conversations
        SET numbers = NULL, ticket_expires = NULL, fences = NULL
        WHERE digest = c.digest;
END $$;

-- Removes a few conversations whose every ticket expired over a second ago
-- (rows nobody came back to): expired rows go without a cron job. Called
-- by every 32nd issue that makes a row, removing up to 128, so rows cannot
-- pile up faster than they go (a sweep costs about as much as an issue,
-- mostly whatever the rows removed cost). Rows another transaction holds are skipped,
-- and so is the caller's own (p_digest); the tickets of the rows swept go
-- with them.
CREATE OR REPLACE FUNCTION ticketlock_sweep(p_now double precision, p_digest bytea)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_spilled bigint[];
BEGIN
    -- `= ANY (ARRAY(...))`: probes of the key, never a scan of the table.
    WITH gone AS (
        DELETE FROM ticketlock_conversations WHERE digest = ANY (ARRAY(
            SELECT c.digest FROM ticketlock_conversations c
                WHERE c.expires < p_now - 1 AND c.digest <> p_digest
                ORDER BY c.expires LIMIT 128 FOR UPDATE SKIP LOCKED
        )) RETURNING epoch, numbers IS NULL AS spilled
    ) SELECT array_agg(gone.epoch) FILTER (WHERE gone.spilled) INTO v_spilled FROM gone;
    IF v_spilled IS NOT NULL THEN
        DELETE FROM ticketlock_tickets t WHERE t.epoch = ANY (v_spilled);
    END IF;
END $$;

-- The microseconds until `p_expires`, at least 0 (a plain expression:
-- inlined).
CREATE OR REPLACE FUNCTION ticketlock_remaining_us(p_expires double precision, p_now double precision)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(0, ceil((p_expires - p_now) * 1e6))::bigint
$$;
