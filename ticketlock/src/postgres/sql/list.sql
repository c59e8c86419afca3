-- The conversations that have a row not yet stale (some ticket may still
-- be live, or expired less than a second ago).
SELECT conversation_id FROM ticketlock_conversations WHERE expires >= ticketlock_now() - 1
