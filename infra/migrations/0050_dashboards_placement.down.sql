DROP TABLE fraud_reviews;
DROP TABLE recommendation_feedback;
DROP TABLE placement_results;
DROP INDEX users_tenant_learner_id;
ALTER TABLE users DROP COLUMN learner_id;
