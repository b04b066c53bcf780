DROP TABLE console_signed_out;
