-- 066_edges_without_fk.sql: the DAG edges are written only with their
-- event, in the same statement (room.c's batch INSERT, room_remote's
-- store), and events are never deleted, so the foreign keys to events
-- only cost a lookup per edge row on the hot path of PUT /send.
ALTER TABLE event_edges DROP CONSTRAINT IF EXISTS event_edges_event_id_fkey;
ALTER TABLE event_auth DROP CONSTRAINT IF EXISTS event_auth_event_id_fkey;
