DROP TABLE recommendation_impressions;
DROP TABLE experiment_results;
DROP TABLE experiment_exposures;
DROP TABLE experiments;
