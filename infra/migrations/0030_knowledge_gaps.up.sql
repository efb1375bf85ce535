-- Knowledge gaps (processors/gaps.py) and the concept-graph version it refreshes on.

-- One row per tenant whose prerequisite graph exists; version grows on every edge
-- change (triggers below), so the gaps processor reloads a tenant's graph only when
-- it changed, checked at every batch in the batch's own transaction.
CREATE TABLE concept_graph_versions (
    tenant_id   text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION bump_concept_graph_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO concept_graph_versions AS v (tenant_id) VALUES (NEW.tenant_id)
        ON CONFLICT (tenant_id) DO UPDATE SET version = v.version + 1, changed_at = now();
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO concept_graph_versions AS v (tenant_id) VALUES (OLD.tenant_id)
        ON CONFLICT (tenant_id) DO UPDATE SET version = v.version + 1, changed_at = now();
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER skill_prerequisites_graph_version
AFTER INSERT OR UPDATE OR DELETE ON skill_prerequisites
FOR EACH ROW EXECUTE FUNCTION bump_concept_graph_version();

-- Per learner and skill: gap state from the learner's BKT mastery (scheduler/gaps.py).
-- Every skill with evidence has a row; status 'clear' means enough evidence and no gap.
CREATE TABLE knowledge_gaps (
    tenant_id         text NOT NULL,
    user_id           text NOT NULL,
    skill_id          text NOT NULL,
    status            text NOT NULL
                      CHECK (status IN ('insufficient_data', 'open', 'resolved', 'clear')),
    severity          double precision NOT NULL CHECK (severity BETWEEN 0 AND 1),
    confidence        double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    p_mastery         double precision NOT NULL CHECK (p_mastery BETWEEN 0 AND 1),
    attempts          integer NOT NULL CHECK (attempts >= 0),
    blocked_skills    integer NOT NULL CHECK (blocked_skills >= 0),
    last_evidence_at  timestamptz NOT NULL,  -- occurred_at of the last answer on the skill
    opened_at         timestamptz,           -- event time the current/last gap opened
    resolved_at       timestamptz,           -- event time it resolved
    last_event_id     uuid NOT NULL,         -- the MasteryUpdated cause that last changed it
    updated_at        timestamptz NOT NULL DEFAULT now(),
    version           bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, user_id, skill_id)
);
-- Dashboards list a tenant's open gaps by severity.
CREATE INDEX knowledge_gaps_open ON knowledge_gaps (tenant_id, severity DESC)
    WHERE status = 'open';
