DROP TABLE privacy_tombstones;
DROP TABLE onboarding_progress;
DROP TABLE learner_profiles;
