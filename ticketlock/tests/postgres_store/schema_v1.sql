-- Version 1 of the PostgreSQL store's schema (tables and functions), as
-- ticketlock installed it before version 2 (short queues in the
-- conversation row): the migration tests install it and expect an upgrade.

-- sql/schema.sql
-- The tables and the sequence of the store (idempotent; run by migrate.sql's
-- caller in one transaction, under an advisory lock).
--
-- ticketlock_fence: never goes back (also across a crash: a sequence is
-- WAL-logged ahead of use). A conversation row's epoch and every holder's
-- fencing token are drawn from it.
CREATE SEQUENCE IF NOT EXISTS ticketlock_fence AS bigint;
-- Counts new conversation rows modulo 8: every eighth sweeps stale rows.
CREATE SEQUENCE IF NOT EXISTS ticketlock_sweeps AS integer MAXVALUE 8 CYCLE;

-- One row per conversation that has a queue. The id is found by its
-- SHA-256 (ids may be longer than a b-tree entry can hold) and compared in
-- full. `expires` bounds every expiry of its tickets from above: once past,
-- the row is stale and an issue elsewhere may sweep it.
CREATE TABLE IF NOT EXISTS ticketlock_conversations (
    epoch bigint PRIMARY KEY,
    digest bytea NOT NULL UNIQUE,
    conversation_id text NOT NULL,
    last_issued bigint NOT NULL,
    queued integer NOT NULL,
    expires double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS ticketlock_conversations_expires
    ON ticketlock_conversations (expires);

-- One row per ticket; `expires` in Unix seconds as Rasa writes it; `fence`
-- set when the ticket first holds the lock. The functions delete a
-- conversation's tickets with its row (no foreign key: its check would
-- cost every insert a lookup of a row the caller already holds locked).
CREATE TABLE IF NOT EXISTS ticketlock_tickets (
    epoch bigint NOT NULL,
    number bigint NOT NULL,
    expires double precision NOT NULL,
    fence bigint,
    PRIMARY KEY (epoch, number)
);
CREATE INDEX IF NOT EXISTS ticketlock_tickets_expires ON ticketlock_tickets (epoch, expires);

-- The version of the tables, and a checksum of the functions' source, so
-- that a build with other functions replaces them.
CREATE TABLE IF NOT EXISTS ticketlock_schema (version integer NOT NULL, checksum bigint NOT NULL);
;

-- sql/common.sql
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
;

-- sql/issue.sql
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
;

-- sql/try_acquire.sql
-- Acquires with a ticket if it is the first live one (its lease then runs
-- p_lifetime_us from now); otherwise keeps it alive for as long.
-- p_epoch < 0 matches any incarnation (Rasa's API passes numbers only).
-- status 0: acquired (value = fencing token, the same for every answer to
-- one holder); 1: queued (value = tickets ahead, remaining_us = the head's
-- time left); 2: lost (not in the queue).
CREATE OR REPLACE FUNCTION ticketlock_try_acquire(
    p_id text, p_number bigint, p_epoch bigint, p_lifetime_us bigint,
    OUT status integer, OUT value bigint, OUT remaining_us bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    v_expires double precision := v_now + p_lifetime_us / 1e6;
    c ticketlock_conversations;
    v_pruned integer;
    v_lowest bigint;
    v_fence bigint;
    v_head bigint;
    v_head_expires double precision;
BEGIN
    remaining_us := -1;
    status := 2;
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id FOR UPDATE;
    IF NOT FOUND OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN;
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
            PERFORM ticketlock_settle(c.epoch, c.queued - v_pruned, v_lowest, NULL, v_now);
        END IF;
        RETURN;
    END IF;
    IF v_pruned > 0 OR v_expires > c.expires THEN
        UPDATE ticketlock_conversations
            SET queued = c.queued - v_pruned, expires = greatest(expires, v_expires)
            WHERE epoch = c.epoch;
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
        RETURN;
    END IF;
    IF v_pruned > 0 AND v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
    status := 1;
    SELECT count(*) INTO value FROM ticketlock_tickets t
        WHERE t.epoch = c.epoch AND t.number < p_number;
    remaining_us := ticketlock_remaining_us(v_head_expires, v_now);
END $$;
;

-- sql/release.sql
-- Removes a ticket; the conversation row goes with its last ticket, and the
-- new head (if the head changed) is told. True when the ticket was there
-- and live.
--
-- One DELETE drops the ticket and the expired ones together; the head
-- changed when a ticket removed was numbered below the new head (the old
-- head was the lowest number).
CREATE OR REPLACE FUNCTION ticketlock_release(p_id text, p_number bigint, p_epoch bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations;
    v_gone integer;
    v_removed boolean;
    v_lowest bigint;
    v_head bigint;
BEGIN
    SELECT * INTO c FROM ticketlock_conversations t
        WHERE t.digest = ticketlock_digest(p_id) AND t.conversation_id = p_id FOR UPDATE;
    IF NOT FOUND OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    WITH gone AS (
        DELETE FROM ticketlock_tickets t
            WHERE t.epoch = c.epoch AND (t.expires < v_now OR t.number = p_number)
            RETURNING t.number, t.expires
    )
    SELECT count(*), coalesce(bool_or(number = p_number AND NOT (v_now > expires)), false),
           min(number)
        INTO v_gone, v_removed, v_lowest FROM gone;
    IF v_gone = 0 THEN
        RETURN false;
    END IF;
    IF c.queued - v_gone <= 0 THEN
        DELETE FROM ticketlock_conversations WHERE epoch = c.epoch;
        RETURN v_removed;
    END IF;
    UPDATE ticketlock_conversations SET queued = c.queued - v_gone WHERE epoch = c.epoch;
    v_head := ticketlock_head(c.epoch);
    IF v_lowest < v_head THEN
        PERFORM pg_notify('ticketlock', c.epoch || ' ' || v_head);
    END IF;
    RETURN v_removed;
END $$;
;

-- sql/renew.sql
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
    v_pruned integer;
    v_lowest bigint;
    v_renewed boolean := false;
BEGIN
    IF c.epoch IS NULL OR (p_epoch >= 0 AND c.epoch <> p_epoch) THEN
        RETURN false;
    END IF;
    SELECT * INTO v_pruned, v_lowest FROM ticketlock_prune(c.epoch, v_now);
    IF ticketlock_head(c.epoch) = p_number THEN
        UPDATE ticketlock_tickets t SET expires = v_expires
            WHERE t.epoch = c.epoch AND t.number = p_number;
        v_renewed := true;
    END IF;
    IF v_pruned > 0 OR (v_renewed AND v_expires > c.expires) THEN
        PERFORM ticketlock_settle(c.epoch, c.queued - v_pruned, v_lowest, p_number,
            CASE WHEN v_renewed THEN v_expires ELSE v_now END);
    END IF;
    RETURN v_renewed;
END $$;
;

-- sql/check.sql
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
;

-- sql/update.sql
-- Removes the expired tickets (Rasa's update_lock), dropping the row when
-- none is left. Returns how many went.
CREATE OR REPLACE FUNCTION ticketlock_update(p_id text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := ticketlock_now();
    c ticketlock_conversations := ticketlock_find(p_id);
    v_pruned integer;
    v_lowest bigint;
BEGIN
    IF c.epoch IS NULL THEN
        RETURN 0;
    END IF;
    SELECT * INTO v_pruned, v_lowest FROM ticketlock_prune(c.epoch, v_now);
    IF v_pruned > 0 THEN
        PERFORM ticketlock_settle(c.epoch, c.queued - v_pruned, v_lowest, NULL, v_now);
    END IF;
    RETURN v_pruned;
END $$;
;

-- sql/save.sql
-- Replaces the conversation's tickets (Rasa's save_lock), keeping what
-- must survive a rewrite: the highest number issued, the epoch, and the
-- fencing token of a ticket that stays. No ticket: the row goes. Everyone
-- waiting is told to look again ('*').
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
            DELETE FROM ticketlock_conversations WHERE epoch = c.epoch;
            DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch;
            PERFORM pg_notify('ticketlock', c.epoch || ' *');
        END IF;
        RETURN;
    END IF;
    SELECT greatest(max(n), p_last_issued) INTO v_issued FROM unnest(p_numbers) n;
    SELECT max(e) INTO v_last FROM unnest(p_expires) e;
    IF c.epoch IS NULL THEN
        INSERT INTO ticketlock_conversations
            VALUES (nextval('ticketlock_fence'), ticketlock_digest(p_id), p_id, v_issued,
                    cardinality(p_numbers), v_last)
            RETURNING * INTO c;
    ELSE
        DELETE FROM ticketlock_tickets t WHERE t.epoch = c.epoch AND t.number <> ALL (p_numbers);
        UPDATE ticketlock_conversations
            SET last_issued = greatest(last_issued, v_issued), queued = cardinality(p_numbers),
                expires = greatest(expires, v_last)
            WHERE epoch = c.epoch;
    END IF;
    INSERT INTO ticketlock_tickets AS t (epoch, number, expires)
        SELECT c.epoch, n, e FROM unnest(p_numbers, p_expires) AS u(n, e)
        ON CONFLICT (epoch, number) DO UPDATE SET expires = excluded.expires;
    PERFORM pg_notify('ticketlock', c.epoch || ' *');
END $$;
;

-- sql/delete.sql
-- Deletes the conversation's row and tickets (Rasa's delete_lock); everyone
-- waiting is told to look again ('*') and finds its ticket gone.
CREATE OR REPLACE FUNCTION ticketlock_delete(p_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch bigint;
BEGIN
    DELETE FROM ticketlock_conversations
        WHERE digest = ticketlock_digest(p_id) AND conversation_id = p_id
        RETURNING epoch INTO v_epoch;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM ticketlock_tickets WHERE epoch = v_epoch;
    PERFORM pg_notify('ticketlock', v_epoch || ' *');
    RETURN true;
END $$;
;
