-- Content CMS: skills with a prerequisite graph, versioned content items with a
-- review workflow, and full-text search over each version.

CREATE TABLE skills (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    skill_id     text NOT NULL,              -- the id events carry in skill_id
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, skill_id)
);

-- skill_id requires prerequisite_id. Cycles are refused by the API (it names the cycle).
CREATE TABLE skill_prerequisites (
    tenant_id        text NOT NULL,
    skill_id         text NOT NULL,
    prerequisite_id  text NOT NULL,
    PRIMARY KEY (tenant_id, skill_id, prerequisite_id),
    CHECK (skill_id <> prerequisite_id),
    FOREIGN KEY (tenant_id, skill_id) REFERENCES skills (tenant_id, skill_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, prerequisite_id) REFERENCES skills (tenant_id, skill_id)
);
CREATE INDEX skill_prerequisites_prereq ON skill_prerequisites (tenant_id, prerequisite_id);

CREATE TABLE content_items (
    tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
    item_id            text NOT NULL,        -- the id events carry in item_id
    kind               text NOT NULL
                       CHECK (kind IN ('question', 'code_exercise', 'lesson', 'reading', 'video')),
    status             text NOT NULL DEFAULT 'draft'
                       CHECK (status IN ('draft', 'in_review', 'approved', 'published', 'archived')),
    current_version    integer NOT NULL CHECK (current_version >= 1),
    -- The version learners and processors see; stays live while a newer draft is reviewed.
    published_version  integer,
    created_by         uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, item_id)
);
CREATE INDEX content_items_status ON content_items (tenant_id, status, item_id);

-- Every edit is a new row; rows are never updated, so history and rollback are exact.
CREATE TABLE content_versions (
    tenant_id      text NOT NULL,
    item_id        text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    title          text NOT NULL,
    skill_ids      text[] NOT NULL DEFAULT '{}',
    payload        jsonb NOT NULL,           -- kind-specific: prompt/answer key, tests, body, url
    note           text NOT NULL DEFAULT '',
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    search_vector  tsvector NOT NULL,        -- title (weight A) + text of the payload (B)
    PRIMARY KEY (tenant_id, item_id, version),
    FOREIGN KEY (tenant_id, item_id) REFERENCES content_items (tenant_id, item_id)
        ON DELETE CASCADE
);
CREATE INDEX content_versions_search ON content_versions USING gin (search_vector);
CREATE INDEX content_versions_skills ON content_versions USING gin (skill_ids);

-- Who moved an item through the workflow, when, and why.
CREATE TABLE content_transitions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    item_id      text NOT NULL,
    version      integer NOT NULL,
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    actor_id     uuid,
    comment      text NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, item_id) REFERENCES content_items (tenant_id, item_id)
        ON DELETE CASCADE
);
CREATE INDEX content_transitions_item ON content_transitions (tenant_id, item_id, id);

-- What processors may recommend: the live published version of each item.
CREATE VIEW published_content AS
SELECT i.tenant_id, i.item_id, i.kind, v.version, v.title, v.skill_ids, v.payload
FROM content_items i
JOIN content_versions v
  ON v.tenant_id = i.tenant_id AND v.item_id = i.item_id AND v.version = i.published_version
WHERE i.published_version IS NOT NULL AND i.status <> 'archived';
