//! Console sessions signed out before they expired (`console_signed_out`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::console_signed_out;

/// Records that session `id` was signed out (it is refused until `expires_at`),
/// and removes the records of sessions that have expired by `now`.
pub async fn sign_out(
    conn: &mut AsyncPgConnection,
    id: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::delete(console_signed_out::table.filter(console_signed_out::expires_at.lt(now))).execute(conn).await?;
    diesel::insert_into(console_signed_out::table)
        .values((console_signed_out::session_id.eq(id), console_signed_out::expires_at.eq(expires_at)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Whether session `id` was signed out.
pub async fn signed_out(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(console_signed_out::table.filter(console_signed_out::session_id.eq(id))))
        .get_result(conn)
        .await
}
