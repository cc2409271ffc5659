-- 040_federated_rooms.sql: rooms shared with other servers (issue 7).
--
-- The DAG of a room is no longer a line: events received over federation
-- keep their own prev_events and depth, so a room has a set of forward
-- extremities (events nothing references yet). rooms.head_event_id stays
-- the latest event written, rooms.state_group the group of current_state.
CREATE TABLE room_extremities (
    room_id   text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    event_id  text NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
COMMENT ON TABLE room_extremities IS 'Forward extremities of each room: the prev_events of the next local event.';
INSERT INTO room_extremities (room_id, event_id)
    SELECT room_id, head_event_id FROM rooms WHERE head_event_id IS NOT NULL;

-- Events that are not part of the visible timeline (outliers: state and
-- auth chains received when joining; rejected and soft-failed events) get
-- a negative stream_ordering from their own sequence, so every stream
-- reader (/sync, /messages) skips them without knowing about them.
CREATE SEQUENCE al_outlier_seq;
ALTER TABLE events ADD COLUMN outlier boolean NOT NULL DEFAULT false;
CREATE INDEX events_room_depth_idx ON events (room_id, depth);
CREATE INDEX event_auth_auth_idx ON event_auth (auth_event_id);

-- Invites from other servers to rooms this server is not in: the stripped
-- state the inviting server sent (invite_room_state plus the invite
-- itself), shown to the invitee by /sync until she joins or rejects.
CREATE TABLE room_invite_state (
    room_id   text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    user_id   text NOT NULL,
    state     jsonb NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_invite_state_state_check
        CHECK (jsonb_typeof(state) = 'array' AND octet_length(state::text) <= 65536)
);
COMMENT ON TABLE room_invite_state IS 'Stripped state of remote invites (federation /invite), for the invitee''s /sync.';
