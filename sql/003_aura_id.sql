-- 003_aura_id.sql: AuraID support (issue 3).
--
-- * aura_id_registry keeps a copy of the owner's profile (display name,
--   avatar) so that search can use its partial indexes; a trigger on users
--   keeps the copy and the AuraID's status (suspended/inactive) in sync.
-- * last_used_at is written in batches by the server; such a write alone
--   does not count as an update (updated_at stays) and notifies nobody.
-- * Changes that affect a resolved AuraID (the record, the owner's online
--   mesh nodes) are announced on channel auralink_aura_id with the handle as
--   payload, so every auralinkd process drops its cached copy.
-- * Search matches a substring of the handle or the display name: a
--   generated column holds both, lower-cased, and a trigram index serves
--   LIKE '%q%' on it when the pg_trgm extension can be created (it ships
--   with PostgreSQL; without it search falls back to a scan).
-- * public_metadata is bounded by the server to 4096 bytes of canonical
--   JSON; jsonb's text form adds a space after every ':' and ',', so the
--   table's backstop allows twice that.

ALTER TABLE aura_id_registry
    DROP CONSTRAINT aura_id_registry_public_metadata_check,
    ADD CONSTRAINT aura_id_registry_public_metadata_check
        CHECK (jsonb_typeof(public_metadata) = 'object'
               AND octet_length(public_metadata::text) <= 8192);

-- updated_at: every column but last_used_at and updated_at.
DROP TRIGGER aura_id_registry_updated_at ON aura_id_registry;
CREATE TRIGGER aura_id_registry_updated_at
    BEFORE UPDATE ON aura_id_registry
    FOR EACH ROW
    WHEN ((OLD.id, OLD.aura_id, OLD.user_id, OLD.username, OLD.display_name, OLD.avatar_url,
           OLD.is_verified, OLD.verification_method, OLD.verified_at, OLD.privacy_level,
           OLD.allow_discovery, OLD.allow_cross_app_calls, OLD.block_unknown_callers,
           OLD.federated_domains, OLD.federation_enabled, OLD.public_metadata, OLD.status,
           OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.aura_id, NEW.user_id, NEW.username, NEW.display_name, NEW.avatar_url,
           NEW.is_verified, NEW.verification_method, NEW.verified_at, NEW.privacy_level,
           NEW.allow_discovery, NEW.allow_cross_app_calls, NEW.block_unknown_callers,
           NEW.federated_domains, NEW.federation_enabled, NEW.public_metadata, NEW.status,
           NEW.created_at))
    EXECUTE FUNCTION al_set_updated_at();

-- Cache invalidation across processes.
CREATE FUNCTION aura_id_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('auralink_aura_id', OLD.aura_id);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.aura_id IS DISTINCT FROM NEW.aura_id THEN
        PERFORM pg_notify('auralink_aura_id', OLD.aura_id);
    END IF;
    PERFORM pg_notify('auralink_aura_id', NEW.aura_id);
    RETURN NEW;
END;
$$;

CREATE TRIGGER aura_id_registry_notify_insert_delete
    AFTER INSERT OR DELETE ON aura_id_registry
    FOR EACH ROW EXECUTE FUNCTION aura_id_notify_change();
CREATE TRIGGER aura_id_registry_notify_update
    AFTER UPDATE ON aura_id_registry
    FOR EACH ROW
    WHEN ((OLD.aura_id, OLD.user_id, OLD.display_name, OLD.avatar_url, OLD.is_verified,
           OLD.privacy_level, OLD.status)
          IS DISTINCT FROM
          (NEW.aura_id, NEW.user_id, NEW.display_name, NEW.avatar_url, NEW.is_verified,
           NEW.privacy_level, NEW.status))
    EXECUTE FUNCTION aura_id_notify_change();
CREATE TRIGGER mesh_nodes_notify_aura_id_insert_delete
    AFTER INSERT OR DELETE ON mesh_nodes
    FOR EACH ROW EXECUTE FUNCTION aura_id_notify_change();
CREATE TRIGGER mesh_nodes_notify_aura_id_update
    AFTER UPDATE ON mesh_nodes
    FOR EACH ROW
    WHEN (OLD.is_online IS DISTINCT FROM NEW.is_online OR OLD.aura_id IS DISTINCT FROM NEW.aura_id)
    EXECUTE FUNCTION aura_id_notify_change();

-- The owner's profile and account state, copied into the AuraID.
CREATE FUNCTION aura_id_sync_from_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE aura_id_registry
       SET display_name = NEW.displayname,
           avatar_url = NEW.avatar_url,
           status = CASE
               WHEN OLD.suspended_at IS NOT DISTINCT FROM NEW.suspended_at
                    AND OLD.deactivated_at IS NOT DISTINCT FROM NEW.deactivated_at THEN status
               WHEN NEW.deactivated_at IS NOT NULL THEN 'inactive'
               WHEN NEW.suspended_at IS NOT NULL THEN 'suspended'
               ELSE 'active'
           END
     WHERE user_id = NEW.user_id;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_sync_aura_id
    AFTER UPDATE ON users
    FOR EACH ROW
    WHEN ((OLD.displayname, OLD.avatar_url, OLD.suspended_at, OLD.deactivated_at)
          IS DISTINCT FROM
          (NEW.displayname, NEW.avatar_url, NEW.suspended_at, NEW.deactivated_at))
    EXECUTE FUNCTION aura_id_sync_from_user();

-- last_used_at is rewritten once a minute per used handle: room on each
-- page lets those be HOT updates (no index changes).
ALTER TABLE aura_id_registry SET (fillfactor = 80);

-- Search: "username\ndisplay name", lower-cased (queries hold no control
-- characters, so a match never spans both).
ALTER TABLE aura_id_registry
    ADD COLUMN search_text text
        GENERATED ALWAYS AS (lower(username) || E'\n' || lower(coalesce(display_name, ''))) STORED;
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX aura_id_registry_discoverable_search_trgm_idx
        ON aura_id_registry USING gin (search_text gin_trgm_ops)
        WHERE allow_discovery AND privacy_level <> 'private' AND status = 'active';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): AuraID substring search will scan', SQLERRM;
END;
$$;
