-- 050_client_extras.sql: presence, pushers and the public room directory.

-- A user's presence. Each change of presence or status message takes a
-- stream position (nextval('al_stream_seq') under the stream lock, like
-- account data), so /sync reports it; last_active_ts alone moves without
-- one. No row: offline.
CREATE TABLE presence (
    user_id          text PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    presence         text NOT NULL,
    status_msg       text NULL,
    last_active_ts   bigint NOT NULL,          -- ms since the epoch
    stream_ordering  bigint NOT NULL,
    CONSTRAINT presence_presence_check CHECK (presence IN ('online', 'unavailable', 'offline')),
    CONSTRAINT presence_status_msg_check CHECK (status_msg IS NULL OR octet_length(status_msg) <= 1024)
);
CREATE INDEX presence_stream_idx ON presence (stream_ordering);
COMMENT ON TABLE presence IS 'Presence of local users (PUT /presence, /sync set_presence); stream_ordering orders changes for /sync.';

-- Push gateways of a user (POST /pushers/set). A pusher belongs to the
-- device whose access token created it and goes with it (logout, password
-- change with logout_devices, deactivation). data is a JSON object.
CREATE TABLE pushers (
    user_id              text NOT NULL,
    device_id            text NOT NULL,
    app_id               text NOT NULL,
    pushkey              text NOT NULL,
    kind                 text NOT NULL,
    app_display_name     text NOT NULL,
    device_display_name  text NOT NULL,
    profile_tag          text NULL,
    lang                 text NOT NULL,
    data                 text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    CONSTRAINT pushers_app_id_check CHECK (octet_length(app_id) BETWEEN 1 AND 64),
    CONSTRAINT pushers_pushkey_check CHECK (octet_length(pushkey) BETWEEN 1 AND 512),
    CONSTRAINT pushers_kind_check CHECK (kind IN ('http', 'email')),
    CONSTRAINT pushers_names_check CHECK (octet_length(app_display_name) <= 255
        AND octet_length(device_display_name) <= 255 AND octet_length(lang) <= 64
        AND (profile_tag IS NULL OR octet_length(profile_tag) <= 255)),
    CONSTRAINT pushers_data_check CHECK (octet_length(data) <= 8192)
);
CREATE INDEX pushers_app_pushkey_idx ON pushers (app_id, pushkey);
CREATE INDEX pushers_device_idx ON pushers (user_id, device_id);

-- The public room directory lists rooms with rooms.is_public (createRoom
-- visibility, PUT /directory/list/room/{roomId}).
CREATE INDEX rooms_public_idx ON rooms (room_id) WHERE is_public;
