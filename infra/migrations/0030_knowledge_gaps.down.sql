DROP TABLE knowledge_gaps;
DROP TRIGGER skill_prerequisites_graph_version ON skill_prerequisites;
DROP FUNCTION bump_concept_graph_version();
DROP TABLE concept_graph_versions;
