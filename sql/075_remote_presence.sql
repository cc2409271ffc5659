-- 075_remote_presence.sql: presence of users of other servers (m.presence
-- EDUs over federation) lives in the presence table beside local users'
-- (same stream, same visibility rule), so its rows are no longer tied to
-- local accounts.
ALTER TABLE presence DROP CONSTRAINT IF EXISTS presence_user_id_fkey;
COMMENT ON TABLE presence IS 'Presence of local users (PUT /presence, /sync set_presence) and of remote users (m.presence EDUs); stream_ordering orders changes for /sync.';
