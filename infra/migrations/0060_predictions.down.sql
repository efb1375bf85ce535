DROP TABLE model_shadow_scores;
DROP TABLE prediction_learner_state;
DROP TABLE skill_predictions;
