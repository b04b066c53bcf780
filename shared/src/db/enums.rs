//! Text columns holding the domain's states and kinds (`domain::states`,
//! `SubscriptionStatus`): written as their names, read back strictly — a stored
//! name no variant has is a deserialization error that surfaces, never a default.
//! The migrations' CHECK constraints hold each column to the same names.

use diesel::deserialize::{self, FromSql, Queryable};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use crate::domain::states::{
    AttemptChannel, AttemptStatus, DeliveryStatus, DocumentKind, InvoiceStatus, OutboxMessage, PaymentKind,
    PaymentStatus, ReceiptKind, ReceiptStatus, RefundStatus, TransferSource,
};
use crate::domain::subscription::{Cause, SubscriptionStatus};

macro_rules! text_column {
    ($($t:ty),+ $(,)?) => {$(
        impl ToSql<Text, Pg> for $t {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $t {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                <$t>::parse(&text).ok_or_else(|| format!("unknown {} {text:?}", stringify!($t)).into())
            }
        }

        impl Queryable<Text, Pg> for $t {
            type Row = Self;

            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl AsExpression<Text> for $t {
            type Expression = <&'static str as AsExpression<Text>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Text>>::as_expression(self.as_str())
            }
        }

        impl AsExpression<Text> for &$t {
            type Expression = <&'static str as AsExpression<Text>>::Expression;

            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Text>>::as_expression(self.as_str())
            }
        }
    )+};
}

text_column!(
    SubscriptionStatus,
    Cause,
    PaymentKind,
    PaymentStatus,
    AttemptChannel,
    AttemptStatus,
    RefundStatus,
    ReceiptKind,
    ReceiptStatus,
    DeliveryStatus,
    OutboxMessage,
    InvoiceStatus,
    DocumentKind,
    TransferSource,
);
