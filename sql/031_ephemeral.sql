-- 031_ephemeral.sql: transaction IDs per room and endpoint, receipts in
-- the stream, the to-device inbox (issue 6).

-- A client's txnId is scoped to (device, room, endpoint): the same txnId
-- in two rooms, or for /send and /redact, names two different requests.
ALTER TABLE event_txns ADD COLUMN kind text NOT NULL DEFAULT 'send';
-- Rows written before this migration cannot tell a PUT /redact from a
-- PUT /send/m.room.redaction; /redact is by far the common one.
UPDATE event_txns t SET kind = 'redact' FROM events e
    WHERE e.event_id = t.event_id AND e.type = 'm.room.redaction';
ALTER TABLE event_txns ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE event_txns DROP CONSTRAINT event_txns_pkey;
ALTER TABLE event_txns ADD PRIMARY KEY (user_id, device_id, room_id, kind, txn_id);
ALTER TABLE event_txns ADD CONSTRAINT event_txns_kind_check CHECK (kind IN ('send', 'redact'));

-- Read receipts (the table of 030) take their stream position like events
-- (nextval under AL_STREAM_LOCK); only these types are stored there,
-- m.fully_read is room account data.
ALTER TABLE receipts ADD CONSTRAINT receipts_type_check
    CHECK (receipt_type IN ('m.read', 'm.read.private'));
ALTER TABLE receipts ADD CONSTRAINT receipts_ids_check
    CHECK (octet_length(user_id) <= 255 AND octet_length(event_id) <= 255 AND octet_length(thread_id) <= 255);

-- Send-to-device messages waiting for a device. A message is deleted when
-- the device syncs with a token at or past its position (it has then
-- received it); a device's messages go with the device.
CREATE TABLE device_inbox (
    user_id          text NOT NULL,
    device_id        text NOT NULL,
    stream_ordering  bigint NOT NULL,
    sender           text NOT NULL,
    type             text NOT NULL,
    content          text NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_ordering),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    CONSTRAINT device_inbox_type_check CHECK (octet_length(type) BETWEEN 1 AND 255),
    CONSTRAINT device_inbox_content_check CHECK (octet_length(content) <= 65536)
);
CREATE INDEX device_inbox_stream_idx ON device_inbox (stream_ordering);

-- PUT /sendToDevice/{type}/{txnId} is idempotent per sending device.
CREATE TABLE device_txns (
    user_id     text NOT NULL,
    device_id   text NOT NULL,
    txn_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    CONSTRAINT device_txns_txn_id_check CHECK (octet_length(txn_id) BETWEEN 1 AND 255)
);
