-- 021_abuse_reputation.sql - confirmed abuse reports lower the reported
-- mesh node's reputation (issue 5) exactly once: reputation_applied_at is
-- set when the first confirmation of a report with reported_node_id
-- applied the penalty (src/abuse.c), so reopening and confirming it again
-- does not punish the node twice.
ALTER TABLE abuse_reports ADD COLUMN reputation_applied_at timestamptz NULL;
