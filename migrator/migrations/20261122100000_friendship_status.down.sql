DROP TABLE friendship_status;
