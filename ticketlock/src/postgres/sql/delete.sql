-- Deletes the conversation's row and tickets (Rasa's delete_lock); everyone
-- waiting is told to look again ('*') and finds its ticket gone.
CREATE OR REPLACE FUNCTION ticketlock_delete(p_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch bigint;
    v_spilled boolean;
BEGIN
    DELETE FROM ticketlock_conversations
        WHERE digest = ticketlock_digest(p_id) AND conversation_id = p_id
        RETURNING epoch, numbers IS NULL INTO v_epoch, v_spilled;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_spilled THEN
        DELETE FROM ticketlock_tickets WHERE epoch = v_epoch;
    END IF;
    PERFORM pg_notify('ticketlock', v_epoch || ' *');
    RETURN true;
END $$;
