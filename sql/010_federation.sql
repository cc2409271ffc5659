-- 010_federation.sql: federation core (issue 4): remote key documents,
-- the durable outbox, inbound transaction de-duplication and the
-- org.auralink.route EDUs received.

-- One signed key document per remote server, as fetched (directly or
-- through a notary), kept until valid_until_ts and beyond for old
-- signatures (old_verify_keys).
CREATE TABLE federation_key_documents (
    server_name     text PRIMARY KEY,
    document        jsonb NOT NULL,
    valid_until_ts  bigint NOT NULL,
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT federation_key_documents_server_name_check
        CHECK (octet_length(server_name) BETWEEN 1 AND 255),
    CONSTRAINT federation_key_documents_document_check
        CHECK (jsonb_typeof(document) = 'object'
               AND octet_length(document::text) <= 65536)
);
COMMENT ON TABLE federation_key_documents IS 'Remote servers'' self-signed key documents (/_matrix/key/v2/server), the cache behind the in-memory key store.';

-- Outbox of the durable sender: an item is deleted only after the
-- destination answered 200 to the transaction that carried it.
CREATE TABLE federation_outbox (
    id           bigserial PRIMARY KEY,
    destination  text NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    -- set when the item is put into a transaction; a retry resends the
    -- same items under the same txnId, so the receiver de-duplicates it
    txn_id       text NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT federation_outbox_kind_check CHECK (kind IN ('pdu', 'edu')),
    CONSTRAINT federation_outbox_destination_check
        CHECK (octet_length(destination) BETWEEN 1 AND 255),
    CONSTRAINT federation_outbox_payload_check
        CHECK (jsonb_typeof(payload) = 'object'
               AND octet_length(payload::text) <= 65536)
);
CREATE INDEX federation_outbox_destination_idx ON federation_outbox (destination, kind, id);
CREATE INDEX federation_outbox_txn_idx ON federation_outbox (destination, txn_id) WHERE txn_id IS NOT NULL;
COMMENT ON TABLE federation_outbox IS 'Durable federation sender queue: PDUs and EDUs per destination, removed after a 200.';

-- Per-destination retry state, so that back-off survives a restart.
CREATE TABLE federation_destinations (
    destination      text PRIMARY KEY,
    retry_interval_ms bigint NOT NULL DEFAULT 0,
    retry_after      timestamptz NULL,
    last_success_at  timestamptz NULL,
    last_failure_at  timestamptz NULL,
    last_error       text NULL,
    CONSTRAINT federation_destinations_retry_check CHECK (retry_interval_ms >= 0),
    CONSTRAINT federation_destinations_last_error_check
        CHECK (last_error IS NULL OR octet_length(last_error) <= 512)
);
COMMENT ON TABLE federation_destinations IS 'Sender back-off per destination (exponential, capped), persisted across restarts.';

-- Inbound /send transactions already processed, per origin, with the
-- response we gave (a repeated txnId gets it again).
CREATE TABLE federation_inbound_txns (
    origin      text NOT NULL,
    txn_id      text NOT NULL,
    response    jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, txn_id),
    CONSTRAINT federation_inbound_txns_txn_id_check
        CHECK (octet_length(txn_id) BETWEEN 1 AND 255)
);
CREATE INDEX federation_inbound_txns_received_idx ON federation_inbound_txns (received_at);
COMMENT ON TABLE federation_inbound_txns IS 'De-duplication of inbound federation transactions (origin, txnId) with the stored response.';

-- org.auralink.route EDUs received from other servers (API.md): the route
-- a remote server chose for a federated call.
CREATE TABLE federation_routes_received (
    id                    bigserial PRIMARY KEY,
    origin                text NOT NULL,
    call_id               text NOT NULL,
    route_id              text NULL,
    path_nodes            jsonb NOT NULL DEFAULT '[]',
    predicted_latency_ms  real NULL,
    content               jsonb NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT federation_routes_received_call_id_check
        CHECK (octet_length(call_id) BETWEEN 1 AND 255),
    CONSTRAINT federation_routes_received_content_check
        CHECK (octet_length(content::text) <= 16384)
);
CREATE INDEX federation_routes_received_call_idx ON federation_routes_received (origin, call_id);
COMMENT ON TABLE federation_routes_received IS 'org.auralink.route EDUs received over federation (route chosen for a federated call).';
