DROP TABLE IF EXISTS identity_providers;
