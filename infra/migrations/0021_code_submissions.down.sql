DROP TABLE code_submissions;
