DROP TABLE recommendation_bandit;
DROP TABLE recommendation_learners;
DROP TABLE recommendations;
