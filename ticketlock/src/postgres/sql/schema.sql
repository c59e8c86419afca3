-- The tables and the sequences of the store, versions 2 and 3 (idempotent; run by
-- schema.rs in one transaction, under an advisory lock, after upgrade.sql).
--
-- ticketlock_fence: never goes back (also across a crash: a sequence is
-- WAL-logged ahead of use). A conversation row's epoch and every holder's
-- fencing token are drawn from it.
CREATE SEQUENCE IF NOT EXISTS ticketlock_fence AS bigint;
-- Counts new conversation rows modulo 32: every 32nd sweeps stale rows.
CREATE SEQUENCE IF NOT EXISTS ticketlock_sweeps AS integer MAXVALUE 32 CYCLE;

-- One row per conversation that has a queue, keyed by the SHA-256 of its id
-- (ids may be longer than a b-tree entry can hold; the id is compared in
-- full). `expires` bounds every expiry of its tickets from above: once
-- past, the row is stale and an issue elsewhere may sweep it.
--
-- A short queue (up to 4 tickets, see ticketlock_inline) lives in the row
-- itself: `numbers`, `ticket_expires` and `fences` hold its tickets in
-- number order, so an uncontended lock and release write and delete this
-- one row. A queue that grows past that moves to ticketlock_tickets (the
-- arrays are then NULL) until the row goes with its last ticket.
CREATE TABLE IF NOT EXISTS ticketlock_conversations (
    epoch bigint NOT NULL,
    digest bytea PRIMARY KEY,
    conversation_id text NOT NULL,
    last_issued bigint NOT NULL,
    queued integer NOT NULL,
    expires double precision NOT NULL,
    numbers bigint[],
    ticket_expires double precision[],
    fences bigint[]
);
CREATE INDEX IF NOT EXISTS ticketlock_conversations_expires
    ON ticketlock_conversations (expires);

-- The tickets of the longer queues, one row each; `expires` in Unix
-- seconds as Rasa writes it; `fence` set when the ticket first holds the
-- lock. The functions delete a conversation's tickets with its row (no
-- foreign key: its check would cost every insert a lookup of a row the
-- caller already holds locked).
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
