-- Classes of a tenant: teachers and the learners they teach.
CREATE TABLE classes (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    class_id    uuid NOT NULL,
    name        text NOT NULL,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, class_id)
);

CREATE TABLE class_members (
    tenant_id    text NOT NULL,
    class_id     uuid NOT NULL,
    user_id      uuid NOT NULL,
    member_role  text NOT NULL CHECK (member_role IN ('teacher', 'learner')),
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, class_id, user_id),
    FOREIGN KEY (tenant_id, class_id) REFERENCES classes (tenant_id, class_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX class_members_user ON class_members (tenant_id, user_id);
