DROP FUNCTION attempts_ensure_partition(timestamptz);
DROP TABLE attempts;  -- with every partition
DROP TABLE review_schedule;
DROP TABLE learner_ability;
DROP TABLE irt_item_parameters;
DROP TABLE bkt_parameters;
DROP TABLE tenant_settings;
