-- 041_calls.sql: tracking of calls (issue 7, part 2). See src/calls.h and
-- src/calls_state.h.
--
-- * A federated_calls row holds the raw milestones of its call (ms since
--   the epoch, the earliest seen of each; causes go with their milestone).
--   Every m.call.* event is merged into them by one upsert (earliest
--   wins, so the order of arrival does not matter); the server then
--   derives call_status, initiated_at, ringing_at, connected_at, ended_at,
--   duration_seconds and end_reason from them (calls_derive).
-- * identity_rank: how sure the row is of who calls whom. An invite (3)
--   names the caller (its sender) and the callee; an answer, reject or
--   select_answer (2) names one side; candidates, negotiate, hangup (1)
--   none. Identity columns are replaced only by a higher rank.
-- * route_id is the route the caller's server chose. On the callee's
--   server that route lives in the caller's server's mesh_routes, so the
--   column no longer references the local table.
-- * org.auralink.route EDUs are stored in federation_routes_received by the
--   federation layer; the trigger below copies the route to the call row
--   when the row exists, and the upsert that creates a row picks up a route
--   that arrived first. Only the caller's server (origin = caller_server)
--   may set the route of an inbound call.

ALTER TABLE federated_calls
    DROP CONSTRAINT federated_calls_route_id_fkey,
    ADD COLUMN identity_rank    smallint NOT NULL DEFAULT 0,
    ADD COLUMN invite_event_id  text NULL,
    ADD COLUMN voip_version     text NULL,
    ADD COLUMN caller_party_id  text NULL,
    ADD COLUMN first_ts         bigint NULL,
    ADD COLUMN expires_ts       bigint NULL,
    ADD COLUMN ring_ts          bigint NULL,
    ADD COLUMN answer_ts        bigint NULL,
    ADD COLUMN select_ts        bigint NULL,
    ADD COLUMN refuse_ts        bigint NULL,
    ADD COLUMN refuse_cause     text NULL,
    ADD COLUMN hangup_ts        bigint NULL,
    ADD COLUMN hangup_cause     text NULL,
    ADD COLUMN timeout_ts       bigint NULL,
    ADD CONSTRAINT federated_calls_identity_rank_check
        CHECK (identity_rank BETWEEN 0 AND 3),
    ADD CONSTRAINT federated_calls_invite_fields_check
        CHECK ((invite_event_id IS NULL OR octet_length(invite_event_id) BETWEEN 1 AND 255)
               AND (voip_version IS NULL OR octet_length(voip_version) BETWEEN 1 AND 16)
               AND (caller_party_id IS NULL OR octet_length(caller_party_id) <= 255)),
    ADD CONSTRAINT federated_calls_causes_check
        CHECK ((refuse_cause IS NULL OR octet_length(refuse_cause) BETWEEN 1 AND 64)
               AND (hangup_cause IS NULL OR octet_length(hangup_cause) BETWEEN 1 AND 64)
               AND (refuse_ts IS NULL) = (refuse_cause IS NULL)
               AND (hangup_ts IS NULL) = (hangup_cause IS NULL));

-- The expiry sweeper: unanswered calls whose invite may have expired.
CREATE INDEX federated_calls_expiry_idx ON federated_calls (expires_ts)
    WHERE call_status IN ('initiated', 'ringing');

CREATE FUNCTION federated_calls_route_received() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.route_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        UPDATE federated_calls
           SET route_id = NEW.route_id::uuid
         WHERE call_id = NEW.call_id
           AND direction = 'inbound'
           AND caller_server = NEW.origin
           AND route_id IS NULL
           AND (NEW.content->>'room_id' IS NULL OR room_id = NEW.content->>'room_id');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER federation_routes_received_calls
    AFTER INSERT ON federation_routes_received
    FOR EACH ROW EXECUTE FUNCTION federated_calls_route_received();
