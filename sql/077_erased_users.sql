-- 077_erased_users.sql: deactivation with erase: true (spec "Account
-- deactivation"): the user's events are served redacted from then on.
ALTER TABLE users ADD COLUMN erased boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN users.erased IS 'Deactivated with erase: true; events by this user are served redacted.';
