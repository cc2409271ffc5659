-- 001_core.sql: the core schema of auralink.
--
-- The migration runner wraps this file in one transaction and records the
-- version in schema_version itself; this file therefore holds neither
-- BEGIN/COMMIT nor schema_version. Plain PostgreSQL 15: no extensions
-- (gen_random_uuid() and sha256() are core), no settings read at run time.
--
-- Conventions: timestamps are timestamptz; every enumerated or bounded value
-- has a CHECK; constraint names are explicit where the C code may want to
-- map a violation (SQLSTATE 23505/23514 plus constraint name) to an error.

-- ---------------------------------------------------------------------------
-- Shared helpers
-- ---------------------------------------------------------------------------

-- Keeps updated_at current on every UPDATE of the tables that have it.
CREATE FUNCTION al_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------
-- Accounts
-- ---------------------------------------------------------------------------

CREATE TABLE users (
    user_id         text PRIMARY KEY,
    localpart       text NOT NULL,
    password_hash   text NULL,
    is_admin        boolean NOT NULL DEFAULT false,
    is_guest        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    suspended_at    timestamptz NULL,
    deactivated_at  timestamptz NULL,
    displayname     text NULL,
    avatar_url      text NULL,
    CONSTRAINT users_localpart_key UNIQUE (localpart),
    -- Matrix v1.11 user ID grammar for new local users.
    CONSTRAINT users_localpart_check
        CHECK (localpart ~ '^[a-z0-9._=/+-]+$'),
    CONSTRAINT users_user_id_check
        CHECK (octet_length(user_id) <= 255
               AND starts_with(user_id, '@' || localpart || ':')
               AND octet_length(user_id) > octet_length(localpart) + 2),
    CONSTRAINT users_password_hash_check
        CHECK (password_hash IS NULL
               OR (starts_with(password_hash, '$argon2id$')
                   AND octet_length(password_hash) <= 512)),
    CONSTRAINT users_displayname_check
        CHECK (displayname IS NULL OR char_length(displayname) <= 256),
    CONSTRAINT users_avatar_url_check
        CHECK (avatar_url IS NULL OR octet_length(avatar_url) <= 2048)
);
COMMENT ON TABLE users IS 'Local accounts of this homeserver (Matrix user IDs, argon2id password hashes, profile).';

CREATE TABLE devices (
    user_id       text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id     text NOT NULL,
    display_name  text NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NULL,
    last_seen_ip  text NULL,
    PRIMARY KEY (user_id, device_id),
    CONSTRAINT devices_device_id_check
        CHECK (octet_length(device_id) BETWEEN 1 AND 255),
    CONSTRAINT devices_display_name_check
        CHECK (display_name IS NULL OR char_length(display_name) <= 256),
    CONSTRAINT devices_last_seen_ip_check
        CHECK (last_seen_ip IS NULL OR octet_length(last_seen_ip) <= 64)
);
COMMENT ON TABLE devices IS 'Devices of local users; a device owns its access tokens.';

CREATE TABLE access_tokens (
    token_hash    bytea PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NULL,
    CONSTRAINT access_tokens_token_hash_check
        CHECK (octet_length(token_hash) = 32),
    CONSTRAINT access_tokens_device_fkey
        FOREIGN KEY (user_id, device_id)
        REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
-- Serves lookups by user (logout/all) and the cascade from devices.
CREATE INDEX access_tokens_user_device_idx ON access_tokens (user_id, device_id);
COMMENT ON TABLE access_tokens IS 'Access tokens, stored only as sha256(token); deleting the device or user revokes them.';

-- ---------------------------------------------------------------------------
-- AuraID
-- ---------------------------------------------------------------------------

CREATE TABLE aura_id_registry (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aura_id                text NOT NULL,
    user_id                text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    username               text NOT NULL,
    display_name           text NULL,
    avatar_url             text NULL,
    is_verified            boolean NOT NULL DEFAULT false,
    verification_method    text NULL,
    verified_at            timestamptz NULL,
    privacy_level          text NOT NULL DEFAULT 'public',
    allow_discovery        boolean NOT NULL DEFAULT true,
    allow_cross_app_calls  boolean NOT NULL DEFAULT true,
    block_unknown_callers  boolean NOT NULL DEFAULT false,
    federated_domains      text[] NOT NULL DEFAULT '{}',
    federation_enabled     boolean NOT NULL DEFAULT true,
    public_metadata        jsonb NOT NULL DEFAULT '{}',
    status                 text NOT NULL DEFAULT 'active',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    last_used_at           timestamptz NULL,
    CONSTRAINT aura_id_registry_aura_id_key UNIQUE (aura_id),
    CONSTRAINT aura_id_registry_user_id_key UNIQUE (user_id),
    -- Redundant with the two keys above; it lets other tables reference the
    -- pair so that their user_id always matches the AuraID's owner.
    CONSTRAINT aura_id_registry_aura_id_user_id_key UNIQUE (aura_id, user_id),
    CONSTRAINT aura_id_registry_username_check
        CHECK (username ~ '^[A-Za-z0-9_-]{3,30}$'),
    CONSTRAINT aura_id_registry_aura_id_check
        CHECK (aura_id = '@' || username || '.aura'),
    CONSTRAINT aura_id_registry_display_name_check
        CHECK (display_name IS NULL OR char_length(display_name) <= 256),
    CONSTRAINT aura_id_registry_avatar_url_check
        CHECK (avatar_url IS NULL OR octet_length(avatar_url) <= 2048),
    CONSTRAINT aura_id_registry_verification_method_check
        CHECK (verification_method IS NULL
               OR verification_method IN ('phone', 'email', 'kyc')),
    CONSTRAINT aura_id_registry_verified_check
        CHECK (NOT is_verified
               OR (verification_method IS NOT NULL AND verified_at IS NOT NULL)),
    CONSTRAINT aura_id_registry_privacy_level_check
        CHECK (privacy_level IN ('public', 'friends', 'private')),
    CONSTRAINT aura_id_registry_federated_domains_check
        CHECK (cardinality(federated_domains) <= 100
               AND coalesce(array_ndims(federated_domains), 1) = 1
               AND array_position(federated_domains, NULL) IS NULL),
    CONSTRAINT aura_id_registry_public_metadata_check
        CHECK (jsonb_typeof(public_metadata) = 'object'
               AND octet_length(public_metadata::text) <= 4096),
    CONSTRAINT aura_id_registry_status_check
        CHECK (status IN ('active', 'suspended', 'inactive'))
);
-- Handles are unique regardless of case: @Alice.aura blocks @alice.aura.
-- Use ON CONFLICT ((lower(aura_id))) or map 23505 on this index name.
CREATE UNIQUE INDEX aura_id_registry_aura_id_lower_key
    ON aura_id_registry (lower(aura_id));
-- Prefix search on the handle: lower(username) LIKE 'prefix%'.
CREATE INDEX aura_id_registry_username_prefix_idx
    ON aura_id_registry (lower(username) text_pattern_ops);
-- Same, restricted to discoverable records; a search query must repeat the
-- predicate (allow_discovery AND privacy_level <> 'private' AND
-- status = 'active') for the planner to pick these.
CREATE INDEX aura_id_registry_discoverable_username_idx
    ON aura_id_registry (lower(username) text_pattern_ops)
    WHERE allow_discovery AND privacy_level <> 'private' AND status = 'active';
CREATE INDEX aura_id_registry_discoverable_display_name_idx
    ON aura_id_registry (lower(display_name) text_pattern_ops)
    WHERE allow_discovery AND privacy_level <> 'private' AND status = 'active';
CREATE TRIGGER aura_id_registry_updated_at
    BEFORE UPDATE ON aura_id_registry
    FOR EACH ROW EXECUTE FUNCTION al_set_updated_at();
COMMENT ON TABLE aura_id_registry IS 'AuraIDs (@name.aura) claimed on this server, one per local user, with privacy and federation settings.';

CREATE TABLE aura_id_verifications (
    aura_id     text NOT NULL
                REFERENCES aura_id_registry (aura_id) ON DELETE CASCADE,
    method      text NOT NULL,
    code_hash   bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aura_id, method),
    CONSTRAINT aura_id_verifications_method_check
        CHECK (method IN ('phone', 'email', 'kyc')),
    CONSTRAINT aura_id_verifications_code_hash_check
        CHECK (octet_length(code_hash) = 32),
    CONSTRAINT aura_id_verifications_attempts_check
        CHECK (attempts >= 0),
    CONSTRAINT aura_id_verifications_expires_check
        CHECK (expires_at > created_at)
);
CREATE INDEX aura_id_verifications_expires_idx
    ON aura_id_verifications (expires_at);
COMMENT ON TABLE aura_id_verifications IS 'Pending AuraID verification codes (hashed), one per AuraID and method.';

-- ---------------------------------------------------------------------------
-- Cross-app connections and notification preferences
-- ---------------------------------------------------------------------------

CREATE TABLE cross_app_connections (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aura_id       text NOT NULL
                  REFERENCES aura_id_registry (aura_id) ON DELETE CASCADE,
    app_id        text NOT NULL,
    app_name      text NOT NULL,
    app_domain    text NOT NULL,
    platform      text NULL,
    sdk_version   text NULL,
    permissions   jsonb NOT NULL DEFAULT '{}',
    is_active     boolean NOT NULL DEFAULT true,
    connected_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NULL,
    revoked_at    timestamptz NULL,
    CONSTRAINT cross_app_connections_aura_id_app_id_key UNIQUE (aura_id, app_id),
    CONSTRAINT cross_app_connections_app_id_check
        CHECK (octet_length(app_id) BETWEEN 1 AND 255),
    CONSTRAINT cross_app_connections_app_name_check
        CHECK (char_length(app_name) BETWEEN 1 AND 256),
    CONSTRAINT cross_app_connections_app_domain_check
        CHECK (octet_length(app_domain) BETWEEN 1 AND 255),
    CONSTRAINT cross_app_connections_platform_check
        CHECK (platform IS NULL
               OR platform IN ('ios', 'android', 'web', 'desktop', 'other')),
    CONSTRAINT cross_app_connections_sdk_version_check
        CHECK (sdk_version IS NULL OR octet_length(sdk_version) <= 64),
    CONSTRAINT cross_app_connections_permissions_check
        CHECK (jsonb_typeof(permissions) = 'object'
               AND octet_length(permissions::text) <= 4096),
    CONSTRAINT cross_app_connections_revoked_check
        CHECK (revoked_at IS NULL OR NOT is_active)
);
COMMENT ON TABLE cross_app_connections IS 'Apps connected to an AuraID (where calls ring); revoked rows stay with is_active = false.';

CREATE TABLE notification_preferences (
    aura_id                 text PRIMARY KEY
                            REFERENCES aura_id_registry (aura_id) ON DELETE CASCADE,
    preferred_apps          text[] NOT NULL DEFAULT '{}',
    smart_routing_enabled   boolean NOT NULL DEFAULT false,
    work_app_id             text NULL,
    personal_app_id         text NULL,
    work_hours_start        time NULL DEFAULT '09:00',
    work_hours_end          time NULL DEFAULT '17:00',
    work_days               integer[] NOT NULL DEFAULT '{1,2,3,4,5}',
    dnd_enabled             boolean NOT NULL DEFAULT false,
    dnd_start               time NULL,
    dnd_end                 time NULL,
    dnd_days                integer[] NOT NULL DEFAULT '{0,1,2,3,4,5,6}',
    ring_all_apps           boolean NOT NULL DEFAULT true,
    ring_timeout_seconds    integer NOT NULL DEFAULT 30,
    call_screening_enabled  boolean NOT NULL DEFAULT false,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_preferences_preferred_apps_check
        CHECK (cardinality(preferred_apps) <= 32
               AND coalesce(array_ndims(preferred_apps), 1) = 1
               AND array_position(preferred_apps, NULL) IS NULL),
    CONSTRAINT notification_preferences_app_ids_check
        CHECK ((work_app_id IS NULL OR octet_length(work_app_id) BETWEEN 1 AND 255)
               AND (personal_app_id IS NULL
                    OR octet_length(personal_app_id) BETWEEN 1 AND 255)),
    -- Days are 0 (Sunday) .. 6 (Saturday); a window may cross midnight, so
    -- start and end are not ordered.
    CONSTRAINT notification_preferences_work_days_check
        CHECK (work_days <@ ARRAY[0, 1, 2, 3, 4, 5, 6]
               AND coalesce(array_ndims(work_days), 1) = 1),
    CONSTRAINT notification_preferences_dnd_days_check
        CHECK (dnd_days <@ ARRAY[0, 1, 2, 3, 4, 5, 6]
               AND coalesce(array_ndims(dnd_days), 1) = 1),
    CONSTRAINT notification_preferences_dnd_window_check
        CHECK (NOT dnd_enabled OR (dnd_start IS NOT NULL AND dnd_end IS NOT NULL)),
    CONSTRAINT notification_preferences_ring_timeout_check
        CHECK (ring_timeout_seconds BETWEEN 5 AND 120)
);
CREATE TRIGGER notification_preferences_updated_at
    BEFORE UPDATE ON notification_preferences
    FOR EACH ROW EXECUTE FUNCTION al_set_updated_at();
COMMENT ON TABLE notification_preferences IS 'Per-AuraID call notification rules: preferred apps, work hours, do-not-disturb, ringing.';

-- ---------------------------------------------------------------------------
-- Mesh network
-- ---------------------------------------------------------------------------

CREATE TABLE mesh_nodes (
    node_id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aura_id                  text NOT NULL,
    user_id                  text NOT NULL,
    node_type                text NOT NULL DEFAULT 'peer',
    address                  text NULL,
    port                     integer NULL,
    max_connections          integer NOT NULL DEFAULT 50,
    current_connections      integer NOT NULL DEFAULT 0,
    bandwidth_capacity_mbps  real NOT NULL DEFAULT 0,
    bandwidth_used_mbps      real NOT NULL DEFAULT 0,
    avg_latency_ms           real NOT NULL DEFAULT 0,
    packet_loss_rate         real NOT NULL DEFAULT 0,
    region                   text NULL,
    country_code             char(2) NULL,
    latitude                 double precision NULL,
    longitude                double precision NULL,
    supports_video           boolean NOT NULL DEFAULT true,
    supports_audio           boolean NOT NULL DEFAULT true,
    supports_screen_share    boolean NOT NULL DEFAULT false,
    supports_aic             boolean NOT NULL DEFAULT false,
    accepting_connections    boolean NOT NULL DEFAULT true,
    is_online                boolean NOT NULL DEFAULT true,
    last_heartbeat_at        timestamptz NULL DEFAULT now(),
    reputation_score         real NOT NULL DEFAULT 50,
    trust_level              text NOT NULL DEFAULT 'new',
    uptime_percentage        real NOT NULL DEFAULT 100,
    total_routes             integer NOT NULL DEFAULT 0,
    successful_routes        integer NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    -- The node's user_id is always the owner of its AuraID.
    CONSTRAINT mesh_nodes_aura_id_fkey
        FOREIGN KEY (aura_id, user_id)
        REFERENCES aura_id_registry (aura_id, user_id) ON DELETE CASCADE,
    CONSTRAINT mesh_nodes_node_type_check
        CHECK (node_type IN ('peer', 'relay', 'edge', 'super_node')),
    CONSTRAINT mesh_nodes_address_check
        CHECK (address IS NULL OR octet_length(address) BETWEEN 1 AND 255),
    CONSTRAINT mesh_nodes_port_check
        CHECK (port IS NULL OR port BETWEEN 1 AND 65535),
    -- current_connections may briefly exceed max_connections in a reported
    -- heartbeat, so the two are not compared here.
    CONSTRAINT mesh_nodes_max_connections_check
        CHECK (max_connections > 0),
    CONSTRAINT mesh_nodes_current_connections_check
        CHECK (current_connections >= 0),
    CONSTRAINT mesh_nodes_bandwidth_check
        CHECK (bandwidth_capacity_mbps >= 0 AND bandwidth_used_mbps >= 0),
    CONSTRAINT mesh_nodes_avg_latency_check
        CHECK (avg_latency_ms >= 0),
    CONSTRAINT mesh_nodes_packet_loss_rate_check
        CHECK (packet_loss_rate BETWEEN 0 AND 1),
    CONSTRAINT mesh_nodes_region_check
        CHECK (region IS NULL OR octet_length(region) BETWEEN 1 AND 64),
    CONSTRAINT mesh_nodes_country_code_check
        CHECK (country_code IS NULL OR country_code ~ '^[A-Z]{2}$'),
    CONSTRAINT mesh_nodes_latitude_check
        CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    CONSTRAINT mesh_nodes_longitude_check
        CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180),
    CONSTRAINT mesh_nodes_reputation_score_check
        CHECK (reputation_score BETWEEN 0 AND 100),
    CONSTRAINT mesh_nodes_trust_level_check
        CHECK (trust_level IN ('verified', 'trusted', 'new', 'suspicious', 'banned')),
    CONSTRAINT mesh_nodes_uptime_percentage_check
        CHECK (uptime_percentage BETWEEN 0 AND 100),
    CONSTRAINT mesh_nodes_routes_check
        CHECK (total_routes >= 0 AND successful_routes >= 0
               AND successful_routes <= total_routes)
);
CREATE INDEX mesh_nodes_aura_id_idx ON mesh_nodes (aura_id);
CREATE INDEX mesh_nodes_user_id_idx ON mesh_nodes (user_id);
-- Online nodes, e.g. the sweep that marks nodes with stale heartbeats.
CREATE INDEX mesh_nodes_online_heartbeat_idx
    ON mesh_nodes (last_heartbeat_at) WHERE is_online;
CREATE INDEX mesh_nodes_type_online_idx ON mesh_nodes (node_type, is_online);
CREATE INDEX mesh_nodes_region_idx ON mesh_nodes (region);
CREATE TRIGGER mesh_nodes_updated_at
    BEFORE UPDATE ON mesh_nodes
    FOR EACH ROW EXECUTE FUNCTION al_set_updated_at();
COMMENT ON TABLE mesh_nodes IS 'Mesh nodes (peer, relay, edge, super_node) owned by local AuraIDs, with live metrics and reputation.';

-- Source/destination AuraIDs and nodes may belong to other servers (cross-
-- domain routes), so they carry no foreign keys.
CREATE TABLE mesh_routes (
    route_id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_aura_id            text NOT NULL,
    destination_aura_id       text NOT NULL,
    source_node_id            uuid NULL,
    destination_node_id       uuid NULL,
    path_nodes                uuid[] NOT NULL,
    path_length               integer NOT NULL,
    route_type                text NOT NULL,
    media_type                text NOT NULL DEFAULT 'audio',
    predicted_latency_ms      real NULL,
    predicted_bandwidth_mbps  real NULL,
    ai_score                  real NULL,
    optimization_factors      jsonb NOT NULL DEFAULT '{}',
    actual_latency_ms         real NULL,
    actual_bandwidth_mbps     real NULL,
    packet_loss_rate          real NULL,
    jitter_ms                 real NULL,
    success_rate              real NULL,
    is_optimal                boolean NOT NULL DEFAULT false,
    call_id                   text NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    expires_at                timestamptz NOT NULL DEFAULT now() + interval '5 minutes',
    performance_reported_at   timestamptz NULL,
    CONSTRAINT mesh_routes_aura_ids_check
        CHECK (octet_length(source_aura_id) BETWEEN 1 AND 255
               AND octet_length(destination_aura_id) BETWEEN 1 AND 255),
    CONSTRAINT mesh_routes_path_nodes_check
        CHECK (cardinality(path_nodes) BETWEEN 1 AND 4
               AND array_ndims(path_nodes) = 1
               AND array_position(path_nodes, NULL) IS NULL),
    CONSTRAINT mesh_routes_path_length_check
        CHECK (path_length BETWEEN 1 AND 4),
    CONSTRAINT mesh_routes_route_type_check
        CHECK (route_type IN ('direct_p2p', 'relay')),
    CONSTRAINT mesh_routes_media_type_check
        CHECK (media_type IN ('audio', 'video', 'screen_share', 'data')),
    CONSTRAINT mesh_routes_predicted_check
        CHECK ((predicted_latency_ms IS NULL OR predicted_latency_ms >= 0)
               AND (predicted_bandwidth_mbps IS NULL OR predicted_bandwidth_mbps >= 0)),
    CONSTRAINT mesh_routes_ai_score_check
        CHECK (ai_score IS NULL OR ai_score BETWEEN 0 AND 1),
    CONSTRAINT mesh_routes_optimization_factors_check
        CHECK (jsonb_typeof(optimization_factors) = 'object'
               AND octet_length(optimization_factors::text) <= 8192),
    CONSTRAINT mesh_routes_actual_check
        CHECK ((actual_latency_ms IS NULL OR actual_latency_ms >= 0)
               AND (actual_bandwidth_mbps IS NULL OR actual_bandwidth_mbps >= 0)
               AND (jitter_ms IS NULL OR jitter_ms >= 0)),
    CONSTRAINT mesh_routes_packet_loss_rate_check
        CHECK (packet_loss_rate IS NULL OR packet_loss_rate BETWEEN 0 AND 1),
    CONSTRAINT mesh_routes_success_rate_check
        CHECK (success_rate IS NULL OR success_rate BETWEEN 0 AND 1),
    CONSTRAINT mesh_routes_call_id_check
        CHECK (call_id IS NULL OR octet_length(call_id) BETWEEN 1 AND 255),
    CONSTRAINT mesh_routes_expires_check
        CHECK (expires_at >= created_at)
);
CREATE INDEX mesh_routes_created_at_idx ON mesh_routes (created_at);
CREATE INDEX mesh_routes_source_destination_idx
    ON mesh_routes (source_aura_id, destination_aura_id, created_at DESC);
CREATE INDEX mesh_routes_destination_idx ON mesh_routes (destination_aura_id);
CREATE INDEX mesh_routes_call_id_idx ON mesh_routes (call_id)
    WHERE call_id IS NOT NULL;
COMMENT ON TABLE mesh_routes IS 'Routes chosen for calls: predicted metrics at selection, actual metrics reported afterwards.';

CREATE TABLE node_reputation_events (
    id                bigserial PRIMARY KEY,
    node_id           uuid NOT NULL REFERENCES mesh_nodes (node_id) ON DELETE CASCADE,
    event_type        text NOT NULL,
    previous_score    real NOT NULL,
    new_score         real NOT NULL,
    change            real NOT NULL,
    description       text NULL,
    related_route_id  uuid NULL REFERENCES mesh_routes (route_id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT node_reputation_events_event_type_check
        CHECK (event_type IN ('route_success', 'route_failure', 'missed_heartbeat',
                              'abuse_confirmed', 'admin_adjustment', 'uptime_bonus')),
    CONSTRAINT node_reputation_events_scores_check
        CHECK (previous_score BETWEEN 0 AND 100 AND new_score BETWEEN 0 AND 100),
    CONSTRAINT node_reputation_events_change_check
        CHECK (change BETWEEN -100 AND 100),
    CONSTRAINT node_reputation_events_description_check
        CHECK (description IS NULL OR char_length(description) <= 1000)
);
CREATE INDEX node_reputation_events_node_created_idx
    ON node_reputation_events (node_id, created_at);
CREATE INDEX node_reputation_events_route_idx
    ON node_reputation_events (related_route_id)
    WHERE related_route_id IS NOT NULL;
COMMENT ON TABLE node_reputation_events IS 'History of mesh node reputation changes (scores clamped to 0..100, so new may differ from previous + change).';

-- ---------------------------------------------------------------------------
-- Federation
-- ---------------------------------------------------------------------------

CREATE TABLE federation_servers (
    domain                text PRIMARY KEY,
    verify_keys           jsonb NOT NULL DEFAULT '{}',
    trust_level           text NOT NULL DEFAULT 'pending',
    is_whitelisted        boolean NOT NULL DEFAULT false,
    is_blacklisted        boolean NOT NULL DEFAULT false,
    supports_aura_id      boolean NOT NULL DEFAULT false,
    supports_mesh         boolean NOT NULL DEFAULT false,
    supports_calls        boolean NOT NULL DEFAULT false,
    server_version        text NULL,
    last_health_check_at  timestamptz NULL,
    avg_response_time_ms  real NULL,
    success_rate          real NULL,
    is_online             boolean NOT NULL DEFAULT false,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at          timestamptz NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    notes                 text NULL,
    -- Matrix server name: DNS name, IPv4 or [IPv6] literal, optional :port.
    CONSTRAINT federation_servers_domain_check
        CHECK (octet_length(domain) BETWEEN 1 AND 255
               AND domain ~ '^[A-Za-z0-9.:\[\]-]+$'),
    -- {"ed25519:abc": {"key": "...", "valid_until_ts": 123}, ...}
    CONSTRAINT federation_servers_verify_keys_check
        CHECK (jsonb_typeof(verify_keys) = 'object'
               AND octet_length(verify_keys::text) <= 65536),
    CONSTRAINT federation_servers_trust_level_check
        CHECK (trust_level IN ('pending', 'trusted', 'verified', 'blocked')),
    CONSTRAINT federation_servers_lists_check
        CHECK (NOT (is_whitelisted AND is_blacklisted)),
    CONSTRAINT federation_servers_server_version_check
        CHECK (server_version IS NULL OR octet_length(server_version) <= 256),
    CONSTRAINT federation_servers_avg_response_time_check
        CHECK (avg_response_time_ms IS NULL OR avg_response_time_ms >= 0),
    CONSTRAINT federation_servers_success_rate_check
        CHECK (success_rate IS NULL OR success_rate BETWEEN 0 AND 1),
    CONSTRAINT federation_servers_consecutive_failures_check
        CHECK (consecutive_failures >= 0),
    CONSTRAINT federation_servers_notes_check
        CHECK (notes IS NULL OR char_length(notes) <= 4000)
);
-- Server names compare case-insensitively; one row per name.
CREATE UNIQUE INDEX federation_servers_domain_lower_key
    ON federation_servers (lower(domain));
CREATE TRIGGER federation_servers_updated_at
    BEFORE UPDATE ON federation_servers
    FOR EACH ROW EXECUTE FUNCTION al_set_updated_at();
COMMENT ON TABLE federation_servers IS 'Known remote homeservers: cached verify keys, trust level, allow/block lists, health.';

CREATE TABLE federated_calls (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id           text NOT NULL,
    room_id           text NOT NULL,
    caller_user_id    text NOT NULL,
    callee_user_id    text NULL,
    caller_aura_id    text NULL,
    callee_aura_id    text NULL,
    caller_server     text NULL,
    callee_server     text NULL,
    direction         text NOT NULL,
    media_type        text NOT NULL DEFAULT 'audio',
    call_status       text NOT NULL DEFAULT 'initiated',
    route_id          uuid NULL REFERENCES mesh_routes (route_id) ON DELETE SET NULL,
    notified_apps     text[] NOT NULL DEFAULT '{}',
    end_reason        text NULL,
    initiated_at      timestamptz NOT NULL DEFAULT now(),
    ringing_at        timestamptz NULL,
    connected_at      timestamptz NULL,
    ended_at          timestamptz NULL,
    duration_seconds  integer NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT federated_calls_room_id_call_id_key UNIQUE (room_id, call_id),
    CONSTRAINT federated_calls_call_id_check
        CHECK (octet_length(call_id) BETWEEN 1 AND 255),
    CONSTRAINT federated_calls_room_id_check
        CHECK (octet_length(room_id) BETWEEN 2 AND 255 AND starts_with(room_id, '!')),
    CONSTRAINT federated_calls_user_ids_check
        CHECK (octet_length(caller_user_id) BETWEEN 1 AND 255
               AND (callee_user_id IS NULL
                    OR octet_length(callee_user_id) BETWEEN 1 AND 255)),
    CONSTRAINT federated_calls_direction_check
        CHECK (direction IN ('outbound', 'inbound', 'local')),
    CONSTRAINT federated_calls_media_type_check
        CHECK (media_type IN ('audio', 'video', 'screen_share')),
    CONSTRAINT federated_calls_call_status_check
        CHECK (call_status IN ('initiated', 'ringing', 'connected', 'ended', 'failed')),
    CONSTRAINT federated_calls_ended_check
        CHECK (call_status NOT IN ('ended', 'failed') OR ended_at IS NOT NULL),
    CONSTRAINT federated_calls_notified_apps_check
        CHECK (cardinality(notified_apps) <= 32
               AND coalesce(array_ndims(notified_apps), 1) = 1),
    CONSTRAINT federated_calls_end_reason_check
        CHECK (end_reason IS NULL OR octet_length(end_reason) <= 256),
    CONSTRAINT federated_calls_duration_check
        CHECK (duration_seconds IS NULL OR duration_seconds >= 0)
);
CREATE INDEX federated_calls_caller_idx
    ON federated_calls (caller_user_id, initiated_at DESC);
CREATE INDEX federated_calls_callee_idx
    ON federated_calls (callee_user_id, initiated_at DESC);
CREATE INDEX federated_calls_call_id_idx ON federated_calls (call_id);
CREATE INDEX federated_calls_route_idx ON federated_calls (route_id)
    WHERE route_id IS NOT NULL;
CREATE TRIGGER federated_calls_updated_at
    BEFORE UPDATE ON federated_calls
    FOR EACH ROW EXECUTE FUNCTION al_set_updated_at();
COMMENT ON TABLE federated_calls IS 'Calls (m.call.* in a room) seen by this server, local or across domains, with status timeline and route.';

-- ---------------------------------------------------------------------------
-- Abuse reports
-- ---------------------------------------------------------------------------

-- reported_aura_id may be hosted elsewhere and a reported node may be
-- deleted later; the report must survive both, so neither is a foreign key.
CREATE TABLE abuse_reports (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    reporter_user_id  text NOT NULL,
    reported_aura_id  text NULL,
    reported_node_id  uuid NULL,
    report_type       text NOT NULL,
    severity          text NOT NULL DEFAULT 'medium',
    description       text NOT NULL,
    evidence          jsonb NOT NULL DEFAULT '{}',
    related_call_id   text NULL,
    status            text NOT NULL DEFAULT 'pending',
    resolved_by       text NULL,
    resolution_notes  text NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz NULL,
    CONSTRAINT abuse_reports_target_check
        CHECK (num_nonnulls(reported_aura_id, reported_node_id) = 1),
    CONSTRAINT abuse_reports_reporter_check
        CHECK (octet_length(reporter_user_id) BETWEEN 1 AND 255),
    CONSTRAINT abuse_reports_reported_aura_id_check
        CHECK (reported_aura_id IS NULL
               OR octet_length(reported_aura_id) BETWEEN 1 AND 255),
    CONSTRAINT abuse_reports_report_type_check
        CHECK (report_type IN ('spam', 'harassment', 'impersonation', 'fraud',
                               'malicious_node', 'illegal_content', 'other')),
    CONSTRAINT abuse_reports_severity_check
        CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT abuse_reports_description_check
        CHECK (char_length(description) BETWEEN 1 AND 4000),
    CONSTRAINT abuse_reports_evidence_check
        CHECK (octet_length(evidence::text) <= 65536),
    CONSTRAINT abuse_reports_related_call_id_check
        CHECK (related_call_id IS NULL
               OR octet_length(related_call_id) BETWEEN 1 AND 255),
    CONSTRAINT abuse_reports_status_check
        CHECK (status IN ('pending', 'investigating', 'confirmed', 'dismissed')),
    CONSTRAINT abuse_reports_resolved_check
        CHECK (status NOT IN ('confirmed', 'dismissed') OR resolved_at IS NOT NULL),
    CONSTRAINT abuse_reports_resolution_notes_check
        CHECK (resolution_notes IS NULL OR char_length(resolution_notes) <= 4000)
);
CREATE INDEX abuse_reports_status_created_idx ON abuse_reports (status, created_at);
CREATE INDEX abuse_reports_reporter_idx
    ON abuse_reports (reporter_user_id, created_at);
CREATE INDEX abuse_reports_aura_id_idx ON abuse_reports (reported_aura_id)
    WHERE reported_aura_id IS NOT NULL;
CREATE INDEX abuse_reports_node_id_idx ON abuse_reports (reported_node_id)
    WHERE reported_node_id IS NOT NULL;
COMMENT ON TABLE abuse_reports IS 'Abuse reports against exactly one AuraID or one mesh node, and their moderation outcome.';

-- ---------------------------------------------------------------------------
-- Federation audit log: append-only and hash-chained
-- ---------------------------------------------------------------------------
--
-- Each entry carries prev_hash (the entry_hash of the entry before it; 32
-- zero bytes for the first) and entry_hash (computed by the server). The
-- database enforces that:
--   * rows are never updated, deleted or truncated (triggers below, enabled
--     ALWAYS so session_replication_role = replica does not skip them);
--   * a new row extends the current tip: its prev_hash equals entry_hash of
--     the row with the highest id and its id is higher than that row's;
--   * the chain cannot fork: prev_hash is UNIQUE, so of two concurrent
--     writers that read the same tip, the second fails with 23505.
-- Writers should serialise (e.g. pg_advisory_xact_lock) and retry on 23505
-- or on 23514 with constraint federation_audit_log_chain_check (trigger).

CREATE TABLE federation_audit_log (
    id             bigserial PRIMARY KEY,
    category       text NOT NULL,
    action         text NOT NULL,
    actor          text NULL,
    target         text NULL,
    origin_server  text NULL,
    details        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea NOT NULL,
    entry_hash     bytea NOT NULL,
    CONSTRAINT federation_audit_log_entry_hash_key UNIQUE (entry_hash),
    CONSTRAINT federation_audit_log_prev_hash_key UNIQUE (prev_hash),
    CONSTRAINT federation_audit_log_category_check
        CHECK (category IN ('identity', 'federation', 'keys', 'mesh', 'abuse', 'admin')),
    CONSTRAINT federation_audit_log_action_check
        CHECK (octet_length(action) BETWEEN 1 AND 128),
    CONSTRAINT federation_audit_log_actor_target_check
        CHECK ((actor IS NULL OR octet_length(actor) <= 512)
               AND (target IS NULL OR octet_length(target) <= 512)
               AND (origin_server IS NULL OR octet_length(origin_server) <= 255)),
    CONSTRAINT federation_audit_log_details_check
        CHECK (jsonb_typeof(details) = 'object'
               AND octet_length(details::text) <= 65536),
    CONSTRAINT federation_audit_log_prev_hash_check
        CHECK (octet_length(prev_hash) = 32),
    CONSTRAINT federation_audit_log_entry_hash_check
        CHECK (octet_length(entry_hash) = 32)
);
CREATE INDEX federation_audit_log_category_created_idx
    ON federation_audit_log (category, created_at);
COMMENT ON TABLE federation_audit_log IS 'Append-only, hash-chained log of federation actions (prev_hash links each entry to the one before).';

CREATE FUNCTION federation_audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'federation_audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries can only be inserted.';
END;
$$;

CREATE FUNCTION federation_audit_log_check_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tip_id    bigint;
    tip_hash  bytea;
BEGIN
    SELECT id, entry_hash INTO tip_id, tip_hash
      FROM federation_audit_log
     ORDER BY id DESC
     LIMIT 1;
    IF tip_id IS NULL THEN
        IF NEW.prev_hash <> decode(repeat('00', 32), 'hex') THEN
            RAISE EXCEPTION 'federation_audit_log: first entry must have a zero prev_hash'
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'federation_audit_log_chain_check';
        END IF;
    ELSIF NEW.prev_hash <> tip_hash OR NEW.id <= tip_id THEN
        RAISE EXCEPTION 'federation_audit_log: entry % does not extend the chain tip %',
                NEW.id, tip_id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'federation_audit_log_chain_check';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER federation_audit_log_chain
    BEFORE INSERT ON federation_audit_log
    FOR EACH ROW EXECUTE FUNCTION federation_audit_log_check_chain();
-- Statement level: refuses even an UPDATE/DELETE that matches no row.
CREATE TRIGGER federation_audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON federation_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION federation_audit_log_refuse_change();
CREATE TRIGGER federation_audit_log_no_truncate
    BEFORE TRUNCATE ON federation_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION federation_audit_log_refuse_change();
ALTER TABLE federation_audit_log ENABLE ALWAYS TRIGGER federation_audit_log_chain;
ALTER TABLE federation_audit_log ENABLE ALWAYS TRIGGER federation_audit_log_no_update_delete;
ALTER TABLE federation_audit_log ENABLE ALWAYS TRIGGER federation_audit_log_no_truncate;
