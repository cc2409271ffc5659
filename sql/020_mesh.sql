-- 020_mesh.sql - mesh (issue 5): learned access delay per node, route usage
-- counters, ai_score on the 0..100 scale of mesh_route.h, and indexes for
-- route analytics.

-- The latency model's learned one-way access delay of the node (ms), see
-- src/mesh_model.c. Persisted so a restart keeps what was learned.
ALTER TABLE mesh_nodes
    ADD COLUMN access_delay_ms real NOT NULL DEFAULT 10
        CONSTRAINT mesh_nodes_access_delay_check CHECK (access_delay_ms BETWEEN 0 AND 1000);

-- usage_count: performance reports received for the route (each one use);
-- success_count: those that met the success criterion (loss < 5 % and
-- latency < 400 ms, see src/mesh.c); success_rate = success_count /
-- usage_count. The actual_* columns hold the mean of the reports.
ALTER TABLE mesh_routes
    ADD COLUMN usage_count integer NOT NULL DEFAULT 0,
    ADD COLUMN success_count integer NOT NULL DEFAULT 0,
    ADD COLUMN requested_by text NULL,
    ADD CONSTRAINT mesh_routes_usage_check
        CHECK (usage_count >= 0 AND success_count BETWEEN 0 AND usage_count),
    ADD CONSTRAINT mesh_routes_requested_by_check
        CHECK (requested_by IS NULL OR octet_length(requested_by) BETWEEN 1 AND 255);

ALTER TABLE mesh_routes DROP CONSTRAINT mesh_routes_ai_score_check;
ALTER TABLE mesh_routes ADD CONSTRAINT mesh_routes_ai_score_check
    CHECK (ai_score IS NULL OR ai_score BETWEEN 0 AND 100);

CREATE INDEX mesh_routes_requested_by_created_idx
    ON mesh_routes (requested_by, created_at) WHERE requested_by IS NOT NULL;
