-- event_auth is read by event (its primary key: an event's auth events,
-- the auth chain walked downwards); nothing looks it up by auth_event_id.
-- The second index cost four more B-tree inserts per stored event (about
-- four auth events each) on the serial path of every room's writes.
DROP INDEX IF EXISTS event_auth_auth_idx;
