DROP TABLE notification_deliveries;
DROP TABLE notification_learners;
DROP TABLE notifications;
