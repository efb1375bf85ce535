-- A platform operator sees deployment-wide views (the pipeline's offsets across every
-- tenant). Tenant admins cannot grant it through the API: it is granted in SQL by
-- whoever runs the deployment (issue 12, Info finding).
ALTER TABLE user_roles DROP CONSTRAINT user_roles_role_check;
ALTER TABLE user_roles ADD CONSTRAINT user_roles_role_check CHECK (
    role IN ('learner', 'teacher', 'author', 'reviewer', 'admin', 'operator', 'platform_operator')
);
