-- 036_sync_indexes.sql: an incremental /sync finds the rooms whose
-- membership changed since its token by (user_id, stream_ordering) instead
-- of reading every membership row of the user (issue 6).
CREATE INDEX room_memberships_user_stream_idx ON room_memberships (user_id, stream_ordering);
