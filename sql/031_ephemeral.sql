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
