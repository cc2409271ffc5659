-- The planner's estimate of rows per room and per user, fixed as a share of
-- the table (a negative n_distinct) instead of sampled: right after a burst
-- of new rooms (1,000 created in 14 s) the last ANALYZE still described a
-- server with a few rooms, so "this room's current state" was estimated at
-- half the table and read by a sequential scan per room (75 ms for an
-- initial sync of 100 rooms; 0.2 ms with fresh statistics). The shares are
-- the orders of magnitude of a homeserver: 20 state entries per room, 10
-- members per room, 20 rooms per user. An override takes effect at the next
-- ANALYZE, so the tables are analyzed here.
ALTER TABLE current_state ALTER COLUMN room_id SET (n_distinct = -0.05);
ALTER TABLE room_memberships ALTER COLUMN room_id SET (n_distinct = -0.1);
ALTER TABLE room_memberships ALTER COLUMN user_id SET (n_distinct = -0.05);
ANALYZE current_state;
ANALYZE room_memberships;
