-- The record of one conversation: its epoch, last number issued, and its
-- tickets in queue order (expired ones included, as Rasa's reader sees them).
SELECT c.epoch, c.last_issued,
       coalesce(array_agg(t.number ORDER BY t.number) FILTER (WHERE t.number IS NOT NULL),
                '{}') AS numbers,
       coalesce(array_agg(t.expires ORDER BY t.number) FILTER (WHERE t.number IS NOT NULL),
                '{}') AS expires
FROM ticketlock_conversations c
LEFT JOIN ticketlock_tickets t ON t.epoch = c.epoch
WHERE c.digest = ticketlock_digest($1) AND c.conversation_id = $1
GROUP BY c.epoch, c.last_issued
