-- The record of one conversation: its epoch, last number issued, and its
-- tickets in queue order (expired ones included, as Rasa's reader sees
-- them), from the row's arrays or from ticketlock_tickets.
SELECT c.epoch, c.last_issued,
       coalesce(c.numbers, ARRAY(SELECT t.number FROM ticketlock_tickets t
                                 WHERE t.epoch = c.epoch ORDER BY t.number)) AS numbers,
       coalesce(c.ticket_expires, ARRAY(SELECT t.expires FROM ticketlock_tickets t
                                        WHERE t.epoch = c.epoch ORDER BY t.number)) AS expires
FROM ticketlock_conversations c
WHERE c.digest = ticketlock_digest($1) AND c.conversation_id = $1
