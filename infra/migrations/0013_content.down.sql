DROP VIEW published_content;
DROP TABLE content_transitions;
DROP TABLE content_versions;
DROP TABLE content_items;
DROP TABLE skill_prerequisites;
DROP TABLE skills;
