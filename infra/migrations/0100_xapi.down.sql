DROP TABLE IF EXISTS xapi_statements;
DROP TABLE IF EXISTS xapi_settings;
DROP TABLE IF EXISTS xapi_activities;
