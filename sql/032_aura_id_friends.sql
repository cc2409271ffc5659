-- 032_aura_id_friends.sql: AuraID privacy level `friends` (issue 3).
--
-- A friends-level AuraID is visible to the users who share a joined room
-- with its owner. aura_id_visible_to() asks "are viewer and owner both
-- joined to one room at least?" on every such resolve; with this partial
-- index both sides are index-only scans in room_id order, merged (or one
-- probed per row of the other), without touching the heap or the rows of
-- rooms either user left.
CREATE INDEX room_memberships_joined_idx ON room_memberships (user_id, room_id)
    WHERE membership = 'join';
