-- 033_aura_id_search_notify.sql: the in-memory search index (aura_search.c)
-- of every auralinkd re-reads the AuraIDs announced on auralink_aura_id.
-- Search filters on allow_discovery, which 003 did not announce (resolve
-- does not depend on it): announce it too, and the username (bound to
-- aura_id by a CHECK, listed for clarity).
DROP TRIGGER aura_id_registry_notify_update ON aura_id_registry;
CREATE TRIGGER aura_id_registry_notify_update
    AFTER UPDATE ON aura_id_registry
    FOR EACH ROW
    WHEN ((OLD.aura_id, OLD.user_id, OLD.username, OLD.display_name, OLD.avatar_url,
           OLD.is_verified, OLD.privacy_level, OLD.allow_discovery, OLD.status)
          IS DISTINCT FROM
          (NEW.aura_id, NEW.user_id, NEW.username, NEW.display_name, NEW.avatar_url,
           NEW.is_verified, NEW.privacy_level, NEW.allow_discovery, NEW.status))
    EXECUTE FUNCTION aura_id_notify_change();
