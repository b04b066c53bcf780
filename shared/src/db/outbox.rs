//! The transactional outbox: messages are inserted in the same database
//! transaction as the state change that causes them and published later by the
//! worker's relay. A row stores what happened — an event for product backends or
//! a [`Job`] for the worker, with the envelope `{id, type, created_at, tenant_id,
//! data}`, and for a delayed job the retry step it waits on; the relay alone
//! decides where it goes ([`Route::of`]). `outbox_events` is append-only; what is
//! still to publish is listed in `outbox_pending` (lane, seq; filled by a statement
//! trigger on `outbox_events`), whose rows the relay deletes once the broker
//! confirmed them. (`outbox_events.published_at` is no longer written; it stays one
//! release for the relays of older binaries.)

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{outbox_events, outbox_pending};
use crate::domain::ids::TenantId;
use crate::queue::jobs::Job;
use crate::queue::topology::{EVENTS_EXCHANGE, RETRY_EXCHANGE, WORK_EXCHANGE, retry_queue};

/// Number of relay lanes; messages of one ordering key always share a lane.
pub const LANES: i16 = 16;

pub fn lane_of(ordering_key: Uuid) -> i16 {
    i16::try_from(ordering_key.as_u128() % LANES as u128).unwrap_or(0)
}

pub use crate::domain::states::OutboxMessage as Message;

/// A message to append. `ordering_key` (the subscription, or the customer when
/// there is none) keeps the messages of one aggregate in order through the relay;
/// writers of a key's messages hold that aggregate's row lock, so insertion order
/// is commit order per key.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub ordering_key: Uuid,
    pub event_type: &'static str,
    pub data: EventData,
    pub message: Message,
    /// For jobs: enter the queue's retry ladder at this step instead of the queue
    /// itself (a delayed job).
    pub delay_step: Option<i16>,
    /// The `traceparent` of the span that caused it, when that is not the span
    /// writing it (a batch writes the events of many requests); `None`: the
    /// writing span's.
    pub cause: Option<String>,
}

impl NewEvent {
    /// An event of `event_type`, ordered behind the earlier messages of
    /// `ordering_key` (a subscription, or a customer for what has none).
    pub fn event(
        tenant_id: TenantId,
        ordering_key: impl Into<Uuid>,
        event_type: &'static str,
        data: impl Into<EventData>,
    ) -> Self {
        let (ordering_key, data) = (ordering_key.into(), data.into());
        NewEvent { tenant_id, ordering_key, event_type, data, message: Message::Event, delay_step: None, cause: None }
    }

    /// A job for the worker, ordered like [`NewEvent::event`].
    pub fn job(tenant_id: TenantId, ordering_key: impl Into<Uuid>, job: Job) -> Self {
        let ordering_key = ordering_key.into();
        let (event_type, data) = (job.type_name(), EventData::Tree(job.data()));
        NewEvent { tenant_id, ordering_key, event_type, data, message: Message::Job, delay_step: None, cause: None }
    }

    /// The jobs of a wave of `(tenant, id)` items (a renewal wave's charge attempts
    /// or receipts): per tenant, in order of first appearance, one job for each run
    /// of at most `per_job` ids, made by `job`; each is ordered by its first id.
    pub fn waves(
        items: impl IntoIterator<Item = (TenantId, Uuid)>,
        per_job: usize,
        job: impl Fn(Vec<Uuid>) -> Job,
    ) -> Vec<Self> {
        let mut waves: Vec<(TenantId, Vec<Uuid>)> = Vec::new();
        for (tenant, id) in items {
            match waves.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, ids)) => ids.push(id),
                None => waves.push((tenant, vec![id])),
            }
        }
        waves
            .iter()
            .flat_map(|(tenant, ids)| ids.chunks(per_job.max(1)).map(move |run| (*tenant, run)))
            .filter_map(|(tenant, run)| {
                let first = *run.first()?;
                Some(NewEvent::job(tenant, first, job(run.to_vec())))
            })
            .collect()
    }

    /// Caused by the span `traceparent` names, not by the span writing it.
    pub fn caused_by(mut self, traceparent: Option<String>) -> Self {
        self.cause = traceparent;
        self
    }

    /// Delivers the job after the delay of its queue's retry step `step`.
    pub fn delayed(mut self, step: i16) -> Self {
        self.delay_step = Some(step);
        self
    }
}

/// A message's `data`: a JSON tree, or JSON text serialized straight from a typed
/// payload ([`EventData::of`]). The renewal and capture paths' events are the
/// latter: building each as a tree of maps (keys and values allocated one by one)
/// and freeing it after serializing it was a seventh of the worker's samples on
/// the renewal path (bench/README, "Events serialized from their types").
#[derive(Debug, Clone)]
pub enum EventData {
    Tree(Value),
    Text(Box<serde_json::value::RawValue>),
}

impl EventData {
    /// `payload` serialized as JSON text. Errors: serde_json's (a map whose keys are
    /// not strings; none of the payloads here has one).
    pub fn of(payload: &impl serde::Serialize) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(payload).map(EventData::Text)
    }
}

impl From<Value> for EventData {
    fn from(tree: Value) -> Self {
        EventData::Tree(tree)
    }
}

impl serde::Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EventData::Tree(tree) => tree.serialize(serializer),
            EventData::Text(text) => text.serialize(serializer),
        }
    }
}

/// Where the relay publishes a stored message: exchange and routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub exchange: &'static str,
    pub routing_key: String,
}

impl Route {
    /// Events go to the topic exchange as `<tenant_id>.<type>`; jobs to the work
    /// exchange under their queue's name, or through a retry queue when delayed.
    /// `None` for a job type no queue knows (a row written by a newer binary).
    pub fn of(row: &Pending) -> Option<Route> {
        Some(match row.message {
            Message::Event => {
                Route { exchange: EVENTS_EXCHANGE, routing_key: format!("{}.{}", row.tenant_id, row.event_type) }
            }
            Message::Job => {
                let queue = Job::queue_of(&row.event_type)?;
                match row.delay_step.and_then(|s| usize::try_from(s).ok()) {
                    None => Route { exchange: WORK_EXCHANGE, routing_key: queue.name.to_owned() },
                    Some(step) => Route { exchange: RETRY_EXCHANGE, routing_key: retry_queue(queue.name, step) },
                }
            }
        })
    }
}

/// Appends messages in one statement over arrays, in the given order (their `seq`
/// follows it; the relay publishes a lane in `seq` order); the table's statement
/// trigger puts each on the relay's work list `outbox_pending` (migration 000022).
/// Its SQL never varies, so it stays prepared ([`Cached`]). Returns their ids.
pub async fn emit_many(
    conn: &AsyncPgConnection,
    created_at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> QueryResult<Vec<Uuid>> {
    use diesel::sql_types::{Array, Int2, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // The span writing them is the cause of every message without one of its own
    // (`crate::trace`).
    let writer = crate::trace::current_traceparent();
    let n = events.len();
    let mut causes = Vec::with_capacity(n);
    let (mut ids, mut tenants, mut types, mut keys) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut payloads, mut messages, mut steps, mut lanes) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for e in events {
        let id = Uuid::now_v7();
        let envelope = Envelope { id, event_type: e.event_type, created_at, tenant_id: e.tenant_id, data: &e.data };
        payloads.push(RawJson::of(&envelope).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?);
        ids.push(id);
        tenants.push(e.tenant_id);
        types.push(e.event_type);
        keys.push(e.ordering_key);
        messages.push(e.message.as_str());
        steps.push(e.delay_step);
        lanes.push(lane_of(e.ordering_key));
        causes.push(e.cause.or_else(|| writer.clone()));
    }
    Cached::new(
        diesel::sql_query(
            "INSERT INTO outbox_events (id, tenant_id, event_type, ordering_key, payload, message, delay_step, lane, \
             created_at, trace_context) \
             SELECT i, t, e, k, p, m, d, l, $9, c FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], \
             $5::jsonb[], $6::text[], $7::int2[], $8::int2[], $10::text[]) WITH ORDINALITY AS u(i, t, e, k, p, m, d, l, c, n) \
             ORDER BY n",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<SqlUuid>, _>(&tenants)
        .bind::<Array<Text>, _>(&types)
        .bind::<Array<SqlUuid>, _>(&keys)
        .bind::<Array<Jsonb>, _>(&payloads)
        .bind::<Array<Text>, _>(&messages)
        .bind::<Array<Nullable<Int2>>, _>(&steps)
        .bind::<Array<Int2>, _>(&lanes)
        .bind::<Timestamptz, _>(created_at)
        .bind::<Array<Nullable<Text>>, _>(&causes),
    )
    .execute(&mut &*conn)
    .await?;
    Ok(ids)
}

/// Appends one message; returns its id.
pub async fn emit(conn: &AsyncPgConnection, created_at: DateTime<Utc>, event: NewEvent) -> QueryResult<Uuid> {
    let ids = emit_many(conn, created_at, vec![event]).await?;
    ids.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

/// The stored form of a message: `{id, type, created_at, tenant_id, data}`,
/// serialized straight from the event's `data`. Building it as a [`Value`] first
/// copied `data` through `serde_json::to_value` and freed both trees: about 7 % of
/// the worker's samples on the renewal path (bench/README, "Publishing a lane at
/// once").
#[derive(serde::Serialize)]
struct Envelope<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    created_at: DateTime<Utc>,
    tenant_id: TenantId,
    data: &'a EventData,
}

/// A `jsonb` document as JSON text, in PostgreSQL's binary form of the type (a
/// version byte, 1, then the text) both ways: the relay publishes a stored message
/// without parsing it into a [`Value`] and serializing it again, and
/// [`emit_many`] writes one without building it as a [`Value`]. Reading errors:
/// any other version.
#[derive(Debug, Clone, diesel::deserialize::FromSqlRow, diesel::expression::AsExpression)]
#[diesel(sql_type = diesel::sql_types::Jsonb)]
pub struct RawJson(pub Vec<u8>);

impl RawJson {
    /// `value` serialized as JSON text.
    fn of(value: &impl serde::Serialize) -> serde_json::Result<Self> {
        let mut text = Vec::with_capacity(512);
        serde_json::to_writer(&mut text, value)?;
        Ok(RawJson(text))
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for RawJson {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        match value.as_bytes() {
            [1, text @ ..] => Ok(RawJson(text.to_vec())),
            _ => Err("unsupported jsonb version in a stored message".into()),
        }
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for RawJson {
    fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>) -> diesel::serialize::Result {
        use std::io::Write;
        out.write_all(&[1])?;
        out.write_all(&self.0)?;
        Ok(diesel::serialize::IsNull::No)
    }
}

/// An unpublished message, as the relay reads it.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub seq: i64,
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub message: Message,
    pub event_type: String,
    pub delay_step: Option<i16>,
    /// The envelope, published as PostgreSQL sends it (never parsed by the relay).
    pub payload: RawJson,
    /// The `traceparent` of the span that wrote it, for the AMQP headers.
    pub trace_context: Option<String>,
}

/// Lanes that have unpublished messages: one probe per lane of the small
/// `outbox_pending` table. Its rows are deleted as they are published; a probe
/// steps over their index entries (marked dead after the first pass) until vacuum
/// clears them, never over the published messages themselves. Run it inside
/// [`super::in_transaction_by_index`], like [`pending`] and [`mark_published`]: a
/// plan made while the table was small would scan its dead rows instead.
pub async fn busy_lanes(conn: &mut AsyncPgConnection) -> QueryResult<Vec<i16>> {
    #[derive(QueryableByName)]
    struct Lane {
        #[diesel(sql_type = diesel::sql_types::SmallInt)]
        lane: i16,
    }
    let lanes: Vec<Lane> = Cached::new(
        diesel::sql_query(
            "SELECT l::smallint AS lane FROM generate_series(0, $1 - 1) AS l \
             WHERE EXISTS (SELECT 1 FROM outbox_pending WHERE lane = l)",
        )
        .bind::<diesel::sql_types::SmallInt, _>(LANES),
    )
    .load(conn)
    .await?;
    Ok(lanes.into_iter().map(|l| l.lane).collect())
}

/// The oldest unpublished messages of a lane, in order, at most `limit`: by the
/// lane's index, each message by its `seq` (inside
/// [`super::in_transaction_by_index`], planned at each read for the outbox's size
/// of the moment).
pub async fn pending(conn: &mut AsyncPgConnection, lane: i16, limit: i64) -> QueryResult<Vec<Pending>> {
    outbox_pending::table
        .inner_join(outbox_events::table.on(outbox_events::seq.eq(outbox_pending::seq)))
        .filter(outbox_pending::lane.eq(lane))
        .order(outbox_pending::seq.asc())
        .limit(limit)
        .select((
            outbox_events::seq,
            outbox_events::id,
            outbox_events::tenant_id,
            outbox_events::message,
            outbox_events::event_type,
            outbox_events::delay_step,
            outbox_events::payload,
            outbox_events::trace_context,
        ))
        .load(conn)
        .await
}

/// Takes the messages `seqs` of `lane` off the work list (the broker confirmed
/// them); returns how many were on it. Inside [`super::in_transaction_by_index`].
pub async fn mark_published(conn: &mut AsyncPgConnection, lane: i16, seqs: &[i64]) -> QueryResult<usize> {
    Cached::new(diesel::delete(
        outbox_pending::table.filter(outbox_pending::lane.eq(lane)).filter(outbox_pending::seq.eq_any(seqs)),
    ))
    .execute(conn)
    .await
}

/// Seconds since the oldest unpublished message was written (real time).
pub async fn lag_seconds(conn: &mut AsyncPgConnection) -> QueryResult<f64> {
    let oldest: Option<DateTime<Utc>> =
        outbox_pending::table.select(diesel::dsl::min(outbox_pending::inserted_at)).first(conn).await?;
    Ok(oldest.map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0))
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Takes the relay's transaction-scoped advisory lock of `lane` (namespace
/// `namespace`); false when another relay holds it. Released at commit.
pub async fn try_lock_lane(conn: &mut AsyncPgConnection, namespace: i32, lane: i16) -> QueryResult<bool> {
    use diesel::sql_types::Integer;
    let got: Locked = Cached::new(
        diesel::sql_query("SELECT pg_try_advisory_xact_lock($1, $2) AS locked")
            .bind::<Integer, _>(namespace)
            .bind::<Integer, _>(i32::from(lane)),
    )
    .get_result(conn)
    .await?;
    Ok(got.locked)
}

/// One event of an ordering key's stream, as the operator console lists it.
#[derive(Debug, Clone, Queryable)]
pub struct EventEntry {
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    /// Whether the relay published it (false: still waiting in the outbox).
    pub published: bool,
}

/// The tenant's events ordered by `key` (a subscription's id orders its own
/// events and its payments'), oldest first, at most `limit`.
pub async fn events_of(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    key: Uuid,
    limit: i64,
) -> QueryResult<Vec<EventEntry>> {
    let waiting = outbox_pending::table
        .filter(outbox_pending::lane.eq(outbox_events::lane))
        .filter(outbox_pending::seq.eq(outbox_events::seq));
    outbox_events::table
        .filter(outbox_events::tenant_id.eq(tenant_id))
        .filter(outbox_events::ordering_key.eq(key))
        .filter(outbox_events::message.eq(crate::domain::states::OutboxMessage::Event))
        .order(outbox_events::seq.asc())
        .limit(limit)
        .select((outbox_events::event_type, outbox_events::created_at, diesel::dsl::not(diesel::dsl::exists(waiting))))
        .load(conn)
        .await
}
