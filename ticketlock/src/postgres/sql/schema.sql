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
