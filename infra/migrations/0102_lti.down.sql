DROP TABLE IF EXISTS lti_line_items;
DROP TABLE IF EXISTS lti_contexts;
DROP TABLE IF EXISTS lti_tool_keys;
DROP TABLE IF EXISTS lti_platforms;
