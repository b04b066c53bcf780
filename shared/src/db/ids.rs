//! `uuid` columns holding the domain's typed ids (`domain::ids`).

use diesel::deserialize::{self, FromSql, Queryable};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Nullable, Uuid as SqlUuid};
use uuid::Uuid;

use crate::domain::ids::{CustomerId, PartnerId, PaymentId, SubscriptionId, TenantId};

macro_rules! uuid_column {
    ($($t:ident),+ $(,)?) => {$(
        impl ToSql<SqlUuid, Pg> for $t {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<SqlUuid, Pg> for $t {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map($t)
            }
        }

        impl Queryable<SqlUuid, Pg> for $t {
            type Row = Self;

            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl AsExpression<SqlUuid> for $t {
            type Expression = <Uuid as AsExpression<SqlUuid>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <Uuid as AsExpression<SqlUuid>>::as_expression(self.0)
            }
        }

        impl AsExpression<SqlUuid> for &$t {
            type Expression = <Uuid as AsExpression<SqlUuid>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <Uuid as AsExpression<SqlUuid>>::as_expression(self.0)
            }
        }

        impl AsExpression<Nullable<SqlUuid>> for $t {
            type Expression = <Uuid as AsExpression<Nullable<SqlUuid>>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <Uuid as AsExpression<Nullable<SqlUuid>>>::as_expression(self.0)
            }
        }

        impl AsExpression<Nullable<SqlUuid>> for &$t {
            type Expression = <Uuid as AsExpression<Nullable<SqlUuid>>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <Uuid as AsExpression<Nullable<SqlUuid>>>::as_expression(self.0)
            }
        }
    )+};
}

uuid_column!(TenantId, CustomerId, SubscriptionId, PaymentId, PartnerId);
