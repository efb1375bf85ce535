DROP TABLE class_members;
DROP TABLE classes;
