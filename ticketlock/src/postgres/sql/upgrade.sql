-- Upgrades the tables of an older version in place (run by schema.rs in the
-- migration's transaction, under its advisory lock, before schema.sql; the
-- version is read again here, so a migration that raced this one and won
-- makes this a no-op). Live tickets keep their rows, numbers and fencing
-- tokens.
DO $$
DECLARE
    v integer;
BEGIN
    IF to_regclass('ticketlock_schema') IS NULL THEN
        RETURN;
    END IF;
    SELECT version INTO v FROM ticketlock_schema LIMIT 1;
    IF v = 1 THEN
        -- Version 1: the row was keyed by its epoch with a unique digest,
        -- and every ticket had a row. The digest becomes the key (one index
        -- less) and short queues move into the row; the existing rows keep
        -- their tickets in ticketlock_tickets (NULL arrays).
        ALTER TABLE ticketlock_conversations
            DROP CONSTRAINT ticketlock_conversations_digest_key,
            DROP CONSTRAINT ticketlock_conversations_pkey,
            ADD PRIMARY KEY (digest),
            ADD COLUMN numbers bigint[],
            ADD COLUMN ticket_expires double precision[],
            ADD COLUMN fences bigint[];
        -- Sweeps at every 32nd new row instead of every eighth.
        ALTER SEQUENCE ticketlock_sweeps MAXVALUE 32;
    END IF;
    -- Version 2 to 3 changes no table: only the functions (replaced after
    -- this file), so that a version 2 build refuses the schema.
END $$
