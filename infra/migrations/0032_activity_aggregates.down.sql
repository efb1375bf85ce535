DROP TABLE activity_window_learners;
DROP TABLE activity_aggregates;
