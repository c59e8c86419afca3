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
    IF FOUND THEN
        PERFORM pg_notify('ticketlock', v_epoch || ' *');
    END IF;
    RETURN FOUND;
END $$;
