-- Helpers of the operations: the clock, finding a conversation, pruning and
-- settling a queue after tickets went. (A ticket expires when now >
-- expires, as in Rasa.)

-- The server's clock in Unix seconds (every expiry is by this clock).
CREATE OR REPLACE FUNCTION ticketlock_now() RETURNS double precision
LANGUAGE sql VOLATILE AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

CREATE OR REPLACE FUNCTION ticketlock_digest(p_id text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$ SELECT sha256(convert_to(p_id, 'UTF8')) $$;

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

-- The number of the first ticket of the queue, or NULL.
CREATE OR REPLACE FUNCTION ticketlock_head(p_epoch bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT t.number FROM ticketlock_tickets t
            WHERE t.epoch = p_epoch ORDER BY t.number LIMIT 1);
END $$;

-- After tickets went (the lowest number removed: p_lowest): stores the
-- count and the expiry bound, drops the conversation when no ticket is
-- left, and tells the new head when the head changed, i.e. when a ticket
-- below it went (the old head was the lowest number), unless it is
-- p_quiet, the caller entering now. NOTIFY is delivered at commit, so a
-- woken waiter sees this change.
CREATE OR REPLACE FUNCTION ticketlock_settle(
    p_epoch bigint, p_queued integer, p_lowest bigint, p_quiet bigint,
    p_expires double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_head bigint;
BEGIN
    IF p_queued <= 0 THEN
        DELETE FROM ticketlock_conversations WHERE epoch = p_epoch;
        DELETE FROM ticketlock_tickets WHERE epoch = p_epoch;
        RETURN;
    END IF;
    UPDATE ticketlock_conversations
        SET queued = p_queued, expires = greatest(expires, p_expires)
        WHERE epoch = p_epoch;
    v_head := ticketlock_head(p_epoch);
    IF p_lowest < v_head AND v_head IS DISTINCT FROM p_quiet THEN
        PERFORM pg_notify('ticketlock', p_epoch || ' ' || v_head);
    END IF;
END $$;

-- Drops the expired tickets of a conversation; returns how many went and
-- the lowest number among them.
CREATE OR REPLACE FUNCTION ticketlock_prune(
    p_epoch bigint, p_now double precision, OUT gone integer, OUT lowest bigint
) LANGUAGE plpgsql AS $$
BEGIN
    WITH g AS (
        DELETE FROM ticketlock_tickets t WHERE t.epoch = p_epoch AND t.expires < p_now
            RETURNING t.number
    ) SELECT count(*), min(g.number) INTO gone, lowest FROM g;
END $$;

-- Removes a few conversations whose every ticket expired over a second ago
-- (rows nobody came back to): expired rows go without a cron job. Called
-- by every eighth issue that makes a row, removing up to 32, so rows cannot
-- pile up faster than they go. Rows another transaction holds are skipped,
-- and so is the caller's own (p_digest).
CREATE OR REPLACE FUNCTION ticketlock_sweep(p_now double precision, p_digest bytea)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        DELETE FROM ticketlock_conversations WHERE epoch IN (
            SELECT c.epoch FROM ticketlock_conversations c
                WHERE c.expires < p_now - 1 AND c.digest <> p_digest
                ORDER BY c.expires LIMIT 32 FOR UPDATE SKIP LOCKED
        ) RETURNING epoch
    )
    DELETE FROM ticketlock_tickets t USING gone WHERE t.epoch = gone.epoch;
END $$;

-- The microseconds until `p_expires`, at least 0 (a plain expression:
-- inlined).
CREATE OR REPLACE FUNCTION ticketlock_remaining_us(p_expires double precision, p_now double precision)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(0, ceil((p_expires - p_now) * 1e6))::bigint
$$;
