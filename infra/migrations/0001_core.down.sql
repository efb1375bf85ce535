DROP TABLE IF EXISTS skill_mastery;
DROP TABLE IF EXISTS processor_offsets;
DROP TABLE IF EXISTS api_keys;
