DROP TABLE rejected_messages;
