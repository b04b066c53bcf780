DROP FUNCTION usage_claim(integer, boolean, uuid[], uuid[]);
