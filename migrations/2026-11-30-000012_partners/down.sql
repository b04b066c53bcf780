DROP TABLE partner_commissions;
ALTER TABLE customers DROP CONSTRAINT customers_partner_fk;
DROP TABLE partners;
