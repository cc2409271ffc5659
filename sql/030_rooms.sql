-- 030_rooms.sql: rooms, events, state and sync streams (issue 6).
--
-- One global stream position (al_stream_seq) orders everything /sync
-- reports: events, account data, receipts. A writer takes the advisory
-- lock AL_STREAM_LOCK (6006) just before it draws positions and holds it
-- to commit, so positions become visible in order and a `since` token never
-- skips a row that commits later with a lower position.
CREATE SEQUENCE al_stream_seq;

CREATE TABLE rooms (
    room_id        text PRIMARY KEY,
    room_version   text NOT NULL,
    creator        text NOT NULL,
    is_public      boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- the forward extremity: events of one room are written one at a time
    -- (SELECT ... FOR UPDATE on this row), so the local DAG is a line.
    head_event_id  text NULL,
    head_depth     bigint NOT NULL DEFAULT 0,
    state_group    bigint NULL,          -- state after head_event_id
    CONSTRAINT rooms_room_id_check CHECK (octet_length(room_id) <= 255 AND starts_with(room_id, '!')),
    CONSTRAINT rooms_version_check CHECK (room_version ~ '^[0-9]{1,2}$')
);
COMMENT ON TABLE rooms IS 'Rooms known to this server; head_* is the single local forward extremity.';

CREATE TABLE events (
    event_id         text PRIMARY KEY,
    room_id          text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    stream_ordering  bigint NOT NULL UNIQUE,
    depth            bigint NOT NULL,
    type             text NOT NULL,
    state_key        text NULL,
    sender           text NOT NULL,
    origin_server_ts bigint NOT NULL,
    json             text NOT NULL,       -- the full PDU, canonical JSON
    state_group      bigint NULL,         -- state after this event
    rejected         boolean NOT NULL DEFAULT false,
    soft_failed      boolean NOT NULL DEFAULT false,
    redacted_by      text NULL,
    txn_device       text NULL,           -- sender's device and txn_id (PUT /send)
    txn_id           text NULL,
    CONSTRAINT events_type_check CHECK (octet_length(type) BETWEEN 1 AND 255),
    CONSTRAINT events_state_key_check CHECK (state_key IS NULL OR octet_length(state_key) <= 255),
    CONSTRAINT events_json_check CHECK (octet_length(json) <= 65536)
);
CREATE INDEX events_room_stream_idx ON events (room_id, stream_ordering);

CREATE TABLE event_edges (
    event_id       text NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    prev_event_id  text NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev_idx ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id       text NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    auth_event_id  text NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

-- State groups: a group is its prev_group plus the rows of
-- state_group_edits with its id; a group without prev_group is a full
-- snapshot (written every ROOM_SNAPSHOT_INTERVAL groups), so resolving the
-- state at any event walks a bounded chain.
CREATE TABLE state_groups (
    id          bigserial PRIMARY KEY,
    room_id     text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    prev_group  bigint NULL REFERENCES state_groups (id),
    chain_len   integer NOT NULL DEFAULT 0
);

CREATE TABLE state_group_edits (
    state_group  bigint NOT NULL REFERENCES state_groups (id) ON DELETE CASCADE,
    type         text NOT NULL,
    state_key    text NOT NULL,
    event_id     text NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

-- The current state of each room (the state group of its head, expanded).
CREATE TABLE current_state (
    room_id    text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    type       text NOT NULL,
    state_key  text NOT NULL,
    event_id   text NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership per (room, user), for joined_rooms and sync.
CREATE TABLE room_memberships (
    room_id          text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    membership       text NOT NULL,
    event_id         text NOT NULL,
    stream_ordering  bigint NOT NULL,
    forgotten        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_memberships_membership_check
        CHECK (membership IN ('join', 'invite', 'leave', 'ban', 'knock'))
);
CREATE INDEX room_memberships_user_idx ON room_memberships (user_id, membership);

CREATE TABLE room_aliases (
    alias       text PRIMARY KEY,
    room_id     text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    creator     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT room_aliases_alias_check CHECK (octet_length(alias) <= 255 AND starts_with(alias, '#'))
);
CREATE INDEX room_aliases_room_idx ON room_aliases (room_id);

-- Client transaction IDs: PUT /send/{type}/{txnId} is idempotent per device.
CREATE TABLE event_txns (
    user_id    text NOT NULL,
    device_id  text NOT NULL,
    txn_id     text NOT NULL,
    room_id    text NOT NULL,
    event_id   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE account_data (
    user_id          text NOT NULL,
    room_id          text NOT NULL DEFAULT '',   -- '' = global
    type             text NOT NULL,
    content          text NOT NULL,
    stream_ordering  bigint NOT NULL,
    PRIMARY KEY (user_id, room_id, type),
    CONSTRAINT account_data_type_check CHECK (octet_length(type) BETWEEN 1 AND 255),
    CONSTRAINT account_data_content_check CHECK (octet_length(content) <= 65536)
);
CREATE INDEX account_data_stream_idx ON account_data (user_id, stream_ordering);
CREATE INDEX account_data_global_stream_idx ON account_data (stream_ordering);

CREATE TABLE receipts (
    room_id          text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    receipt_type     text NOT NULL,
    thread_id        text NOT NULL DEFAULT '',
    event_id         text NOT NULL,
    ts               bigint NOT NULL,
    stream_ordering  bigint NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream_idx ON receipts (stream_ordering);

CREATE TABLE user_filters (
    user_id    text NOT NULL,
    filter_id  bigserial,
    json       text NOT NULL,
    PRIMARY KEY (user_id, filter_id),
    CONSTRAINT user_filters_json_check CHECK (octet_length(json) <= 65536)
);
