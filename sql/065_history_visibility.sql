-- 065_history_visibility.sql: history visibility (issue 6) asks, per page
-- of events, whether the reader has a join event in the room after them:
-- the member events of one user in one room by key, not a scan of the room.
CREATE INDEX events_room_state_key_idx ON events (room_id, type, state_key, stream_ordering)
    WHERE state_key IS NOT NULL;
