-- 065_sync_reads.sql: indexes for reads of issue 6. History visibility asks, per page
-- of events, whether the reader has a join event in the room after them:
-- the member events of one user in one room by key, not a scan of the room.
CREATE INDEX events_room_state_key_idx ON events (room_id, type, state_key, stream_ordering)
    WHERE state_key IS NOT NULL;
-- Presence in an incremental /sync: the memberships that changed after a
-- token, in any room, by their stream position.
CREATE INDEX room_memberships_stream_idx ON room_memberships (stream_ordering);
