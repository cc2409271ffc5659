-- 002_accounts.sql: what accounts, admins and the audit writer need on top
-- of 001_core.sql.

-- The audit entry hash covers created_at as integer milliseconds; the
-- timestamptz column cannot give that value back exactly, so the writer
-- stores the hashed value here and verification reads it from here.
-- NULL only for rows written before this migration (there are none: the
-- first writer is the code that ships with it).
ALTER TABLE federation_audit_log ADD COLUMN created_ms bigint NULL;

-- Logins and admin checks look users up by user_id (the primary key);
-- access_tokens are found by token_hash (primary key). Suspended users are
-- listed by admins.
CREATE INDEX users_suspended_idx ON users (suspended_at) WHERE suspended_at IS NOT NULL;
