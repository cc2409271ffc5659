-- 076_backfill.sql: history fetched from other servers (backfill). Such
-- events join the timeline below the local stream: stream_ordering
-- -(4611686018427387904 + nextval('al_backfill_seq')), so older history
-- fetched later sorts lower; /messages reads that range after the
-- positive one, /sync never sees it (it is not news). Outliers keep
-- -nextval('al_outlier_seq'), far above that range.
CREATE SEQUENCE al_backfill_seq;
