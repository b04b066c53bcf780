//! 54-FZ receipts (SPEC §7): an income receipt (`sell`) for every captured payment
//! and a refund receipt (`sell_refund`) for every refund, built from the tenant's
//! fiscal settings (plan-level overrides of VAT and payment object respected) and
//! registered with the tenant's ATOL Online account by the worker.
//!
//! Exactly once: registration attempt N of a receipt is sent with external_id
//! `<receipt id>-<N>`, so re-sending it (a lost answer, a worker killed mid-call) is
//! answered "already exists" (error 33) by ATOL and creates nothing. The outcome is
//! confirmed by polling the report (ATOL's callback only hints that it is ready); a
//! new attempt is made only after ATOL reported the last one `fail`. A receipt that
//! cannot be registered (the document is refused, attempts run out) becomes
//! `failed` with `receipt.failed` and its job is dead-lettered with the reason.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::Tenant;
use super::{JobResult, Page, PageRequest, corrupt, stored_money};
use crate::clock::Clock;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::PaymentRow;
use crate::db::refunds::RefundRow;
use crate::db::schema::{customers, receipts};
use crate::db::{PgPool, in_transaction};
use crate::domain::money::MoneyView;
use crate::domain::plan::PlanFiscal;
use crate::domain::states::{ReceiptKind, ReceiptStatus};
use crate::domain::tenant::FiscalSettings;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::atol::{
    Accepted, AtolAccount, AtolApi, AtolError, AtolFailure, Client, Company, Document, FiscalPayload, Item, Operation,
    Payment, Receipt, ReportStatus, Service, Vat,
};
use crate::queue::jobs::Job;

/// Registration attempts (each after ATOL reported the previous one `fail`).
pub const MAX_ATTEMPTS: i32 = 5;
/// ATOL's limit on an item name.
const NAME_CHARS: usize = 128;
/// Report errors that say the document itself is wrong: a new attempt would fail alike.
const DOCUMENT_ERRORS: [i64; 2] = [13, 32];

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = receipts, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct ReceiptRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
    pub kind: ReceiptKind,
    pub status: ReceiptStatus,
    /// The receipt as ATOL gets it ([`Receipt`]), built when the receipt was
    /// created: JSON text, so amounts stay exact.
    pub document: String,
    pub total: Decimal,
    pub currency: String,
    pub attempt: i32,
    pub provider_uuid: Option<String>,
    pub failure_reason: Option<String>,
    /// The report's fiscal attributes (JSON text).
    pub fiscal: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
    pub kind: ReceiptKind,
    pub status: ReceiptStatus,
    pub total: MoneyView,
    /// The document sent to the fiscal provider: client, company, items
    /// (name, price, quantity, sum, payment_method, payment_object, vat), payments,
    /// total. Amounts are decimal strings here, as everywhere in this API (ATOL gets
    /// them as JSON numbers with two decimals).
    #[schema(value_type = Object)]
    pub receipt: Value,
    /// The current registration attempt; its external_id is `<id>-<attempt>`.
    pub attempt: i32,
    pub external_id: String,
    /// Fiscal attributes once registered: fiscal_document_number,
    /// fiscal_document_attribute (the fiscal sign), fn_number (the storage),
    /// receipt_datetime, shift_number, ecr_registration_number, ofd_receipt_url...
    #[schema(value_type = Option<Object>)]
    pub fiscal: Option<Value>,
    pub failure_reason: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn view(r: &ReceiptRow) -> ServiceResult<ReceiptView> {
    Ok(ReceiptView {
        id: r.id,
        payment_id: r.payment_id,
        refund_id: r.refund_id,
        kind: r.kind,
        status: r.status,
        total: stored_money(r.total, &r.currency, "receipt total")?.into(),
        receipt: document_view(&r.document)?,
        attempt: r.attempt,
        external_id: external_id(r),
        fiscal: r.fiscal.as_deref().map(fiscal_view).transpose()?,
        failure_reason: r.failure_reason.clone(),
        registered_at: r.registered_at,
        created_at: r.created_at,
    })
}

fn amount(d: Decimal) -> Value {
    Value::String(format!("{d:.2}"))
}

/// The stored document with its amounts as decimal strings.
fn document_view(text: &str) -> ServiceResult<Value> {
    let r: Receipt = serde_json::from_str(text).map_err(|e| corrupt("receipt", e))?;
    let items: Vec<Value> = r
        .items
        .iter()
        .map(|i| {
            json!({"name": i.name, "price": amount(i.price), "quantity": i.quantity.normalize().to_string(),
                   "measure": i.measure, "sum": amount(i.sum), "payment_method": i.payment_method,
                   "payment_object": i.payment_object, "vat": {"type": i.vat.kind}})
        })
        .collect();
    let payments: Vec<Value> = r.payments.iter().map(|p| json!({"type": p.kind, "sum": amount(p.sum)})).collect();
    Ok(
        json!({"client": r.client, "company": r.company, "items": items, "payments": payments, "total": amount(r.total)}),
    )
}

/// The stored fiscal attributes, the total as a decimal string.
fn fiscal_view(text: &str) -> ServiceResult<Value> {
    let p: FiscalPayload = serde_json::from_str(text).map_err(|e| corrupt("fiscal attributes", e))?;
    let total = p.total;
    let mut v = serde_json::to_value(p).map_err(|e| corrupt("fiscal attributes", e))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("total".into(), total.map_or(Value::Null, amount));
    }
    Ok(v)
}

fn external_id(r: &ReceiptRow) -> String {
    format!("{}-{}", r.id, r.attempt)
}

/// An enum's wire name (its serde string).
fn wire_name<T: Serialize>(value: &T) -> ServiceResult<String> {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => Ok(s),
        other => Err(corrupt("fiscal setting", format!("{other:?}"))),
    }
}

/// The receipt document: one item per charged thing, paid by card (cashless).
fn document(
    fiscal: &FiscalSettings,
    overrides: Option<PlanFiscal>,
    email: &str,
    lines: &[(String, Decimal)],
) -> ServiceResult<Receipt> {
    let vat = overrides.and_then(|o| o.vat).unwrap_or(fiscal.vat);
    let payment_object = overrides.and_then(|o| o.payment_object).unwrap_or(fiscal.payment_object);
    let payment_method = wire_name(&fiscal.settlement_sign)?;
    let vat = Vat { kind: wire_name(&vat)? };
    let items = lines
        .iter()
        .map(|(name, sum)| Item {
            name: name.chars().take(NAME_CHARS).collect(),
            price: *sum,
            quantity: Decimal::ONE,
            measure: 0,
            sum: *sum,
            payment_method: payment_method.clone(),
            payment_object,
            vat: vat.clone(),
        })
        .collect::<Vec<_>>();
    let total: Decimal = lines.iter().map(|(_, s)| *s).sum();
    Ok(Receipt {
        client: Client { email: Some(email.to_owned()), phone: None },
        company: Company {
            email: fiscal.email.clone(),
            sno: wire_name(&fiscal.sno)?,
            inn: fiscal.inn.clone(),
            payment_address: fiscal.payment_address.clone(),
        },
        items,
        payments: vec![Payment { kind: 1, sum: total }],
        total,
    })
}

/// What a payment charged, one line per charged thing.
fn payment_lines(payment: &PaymentRow) -> ServiceResult<Vec<(String, Decimal)>> {
    super::payments::lines_of(payment)?.iter().map(|l| Ok((l.description.clone(), l.money()?.amount()))).collect()
}

/// A refund's lines: refunds take the payment's lines in order, each up to its
/// sum, so this one takes what follows the `earlier` refunds' share.
fn refund_lines(payment: &PaymentRow, earlier: Decimal, amount: Decimal) -> ServiceResult<Vec<(String, Decimal)>> {
    let mut skip = earlier;
    let mut left = amount;
    let mut out = Vec::new();
    for (name, sum) in payment_lines(payment)? {
        let skipped = sum.min(skip);
        skip -= skipped;
        let part = (sum - skipped).min(left);
        if part.is_zero() {
            continue;
        }
        left -= part;
        out.push((name, part));
    }
    if !left.is_zero() {
        return Err(ServiceError::Internal(format!("refund of {amount} exceeds payment {}'s lines", payment.id)));
    }
    Ok(out)
}

async fn plan_overrides(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> ServiceResult<Option<PlanFiscal>> {
    match payment.plan_id {
        Some(plan) => Ok(super::plans::load_cached(conn, plan).await?.fiscal),
        None => Ok(None),
    }
}

/// Creates a receipt (once per payment or refund) and its registration job.
async fn create(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: Option<&RefundRow>,
    lines: &[(String, Decimal)],
) -> ServiceResult<()> {
    let Some(fiscal) = &tenant.fiscal else { return Ok(()) };
    let email: String = customers::table.find(payment.customer_id).select(customers::email).first(conn).await?;
    let doc = document(fiscal, plan_overrides(conn, payment).await?, &email, lines)?;
    let row = ReceiptRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        payment_id: payment.id,
        refund_id: refund.map(|r| r.id),
        kind: if refund.is_some() { ReceiptKind::IncomeRefund } else { ReceiptKind::Income },
        status: ReceiptStatus::Pending,
        total: doc.total,
        document: serde_json::to_string(&doc).map_err(|e| corrupt("receipt", e))?,
        currency: payment.currency.clone(),
        attempt: 1,
        provider_uuid: None,
        failure_reason: None,
        fiscal: None,
        registered_at: None,
        created_at: now,
    };
    let inserted = diesel::insert_into(receipts::table).values(&row).on_conflict_do_nothing().execute(conn).await?;
    if inserted == 1 {
        let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
        enqueue(conn, now, tenant.id, ordering, row.id).await?;
    }
    Ok(())
}

/// A receipt's messages are ordered with its payment's: by its subscription, else
/// its customer. Returns (subscription, ordering key).
async fn ordering_of(conn: &mut AsyncPgConnection, payment_id: Uuid) -> ServiceResult<(Option<Uuid>, Uuid)> {
    use crate::db::schema::payments as p;
    let (sub, customer): (Option<Uuid>, Uuid) =
        p::table.find(payment_id).select((p::subscription_id, p::customer_id)).first(conn).await?;
    Ok((sub, sub.unwrap_or(customer)))
}

async fn enqueue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant_id: Uuid,
    ordering: Uuid,
    id: Uuid,
) -> ServiceResult<()> {
    let job = NewEvent::job(tenant_id, ordering, Job::RegisterReceipt { receipt_id: id });
    outbox::emit(conn, now, job).await?;
    Ok(())
}

/// The income receipt of a captured payment (nothing when the tenant has no
/// fiscal settings).
pub async fn create_income(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<()> {
    if tenant.fiscal.is_none() {
        return Ok(());
    }
    create(conn, now, tenant, payment, None, &payment_lines(payment)?).await
}

/// The refund receipt of a refund paid back (`payment.refunded_amount` already
/// includes it).
pub async fn create_refund(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &RefundRow,
) -> ServiceResult<()> {
    if tenant.fiscal.is_none() {
        return Ok(());
    }
    let earlier = payment.refunded_amount - refund.amount;
    create(conn, now, tenant, payment, Some(refund), &refund_lines(payment, earlier, refund.amount)?).await
}

/// `GET /v1/receipts?payment_id=`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    payment_id: Option<Uuid>,
    page: PageRequest,
) -> ServiceResult<Page<ReceiptView>> {
    let mut q = receipts::table.filter(receipts::tenant_id.eq(tenant.id)).into_boxed();
    if let Some(p) = payment_id {
        q = q.filter(receipts::payment_id.eq(p));
    }
    if let Some(after) = page.starting_after {
        q = q.filter(receipts::id.gt(after));
    }
    let rows: Vec<ReceiptRow> =
        q.order(receipts::id.asc()).limit(page.fetch()).select(ReceiptRow::as_select()).load(conn).await?;
    let views = rows.iter().map(view).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page::from_rows(views, page, |v| v))
}

async fn load(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<Option<ReceiptRow>> {
    Ok(receipts::table.find(id).select(ReceiptRow::as_select()).first(conn).await.optional()?)
}

async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<Option<ReceiptRow>> {
    Ok(receipts::table.find(id).select(ReceiptRow::as_select()).for_update().first(conn).await.optional()?)
}

async fn save(conn: &mut AsyncPgConnection, row: &ReceiptRow) -> ServiceResult<()> {
    diesel::update(receipts::table.find(row.id))
        .set((row, receipts::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(())
}

async fn emit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    row: &ReceiptRow,
    ty: &'static str,
) -> ServiceResult<()> {
    let (subscription_id, ordering) = ordering_of(conn, row.payment_id).await?;
    // The receipt without its document (GET /v1/receipts has it).
    let v = view(row)?;
    let data = json!({
        "id": v.id, "payment_id": v.payment_id, "refund_id": v.refund_id, "subscription_id": subscription_id,
        "kind": v.kind, "status": v.status, "total": v.total, "attempt": v.attempt, "external_id": v.external_id,
        "fiscal": v.fiscal, "failure_reason": v.failure_reason, "registered_at": v.registered_at,
    });
    outbox::emit(conn, now, NewEvent::event(row.tenant_id, ordering, ty, data)).await?;
    Ok(())
}

/// What the worker learned; applied only while the receipt is still at `attempt`.
enum Learned {
    Accepted(String),
    Registered(Box<FiscalPayload>),
    /// The attempt failed at ATOL: the next attempt may be made.
    AttemptFailed(String),
    /// Nothing more can be done: the receipt fails.
    Failed(String),
    /// The job has run out of retries: the receipt fails at whatever attempt it is.
    GaveUp(String),
}

/// Applies what the worker learned about attempt `attempt` of a receipt.
async fn learn(pool: &PgPool, clock: Clock, id: Uuid, attempt: i32, learned: Learned) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let Some(mut row) = lock(c, id).await? else { return Ok(JobResult::Done) };
        let stale = row.attempt != attempt && !matches!(learned, Learned::GaveUp(_));
        if row.status != ReceiptStatus::Pending || stale {
            return Ok(JobResult::Done);
        }
        match learned {
            Learned::Accepted(uuid) => {
                if row.provider_uuid.is_none() {
                    row.provider_uuid = Some(uuid);
                    save(c, &row).await?;
                }
                Ok(JobResult::RetryLater("registration accepted; waiting for the report".into()))
            }
            Learned::Registered(payload) => {
                row.status = ReceiptStatus::Registered;
                row.fiscal = Some(serde_json::to_string(&*payload).map_err(|e| corrupt("fiscal payload", e))?);
                row.registered_at = Some(now);
                save(c, &row).await?;
                emit(c, now, &row, "receipt.registered").await?;
                Ok(JobResult::Done)
            }
            Learned::AttemptFailed(reason) if attempt < MAX_ATTEMPTS => {
                row.attempt += 1;
                row.provider_uuid = None;
                row.failure_reason = Some(reason.clone());
                save(c, &row).await?;
                Ok(JobResult::RetryLater(format!("attempt {attempt} failed ({reason}); the next one follows")))
            }
            Learned::AttemptFailed(reason) | Learned::Failed(reason) | Learned::GaveUp(reason) => {
                row.status = ReceiptStatus::Failed;
                row.failure_reason = Some(reason.clone());
                save(c, &row).await?;
                emit(c, now, &row, "receipt.failed").await?;
                Ok(JobResult::DeadLetter(format!("receipt {id}: {reason}")))
            }
        }
    })
    .await
}

fn describe(f: &AtolFailure) -> String {
    format!("ATOL error {} ({}): {}", f.code, f.kind, f.text)
}

/// The worker's view of where to send a receipt.
pub struct Registrar<'a> {
    pub api: &'a AtolApi,
    /// Our public base URL, for ATOL's callback (`/v1/webhooks/atol/{tenant}`).
    pub public_url: Option<&'a str>,
}

/// Runs one receipt job: registers the current attempt (idempotent by its
/// external_id) and polls its report. `last`: the job's retries are exhausted,
/// so a receipt still not registered fails now.
pub async fn process(
    pool: &PgPool,
    clock: Clock,
    to: &Registrar<'_>,
    id: Uuid,
    last: bool,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let Some(row) = load(&mut conn, id).await? else {
        return Err(ServiceError::not_found("receipt_not_found", format!("no receipt {id}")));
    };
    if row.status != ReceiptStatus::Pending {
        return Ok(JobResult::Done);
    }
    let tenant = super::tenants::load_cached(&mut conn, row.tenant_id).await?;
    let now = clock.now(&mut conn).await?;
    drop(conn);
    let attempt = row.attempt;
    let give_up = async |reason: String| learn(pool, clock, id, attempt, Learned::GaveUp(reason)).await;
    let Some(fiscal) = &tenant.fiscal else {
        return give_up("the tenant has no fiscal settings".into()).await;
    };
    let account = AtolAccount::from_provider(&fiscal.provider);
    let outcome = step(to, &tenant, &account, &row, now).await;
    let result = match outcome {
        Ok(learned) => learn(pool, clock, id, attempt, learned).await?,
        Err(Retry::Later(reason)) => JobResult::RetryLater(reason),
        // The merchant's ATOL settings are refused: the receipt stays pending (it is
        // not the document's fault), and once the retries run out its job is
        // dead-lettered to be replayed after the settings are fixed.
        Err(Retry::Configuration(operation, reason)) => {
            return Ok(match super::merchant_side_failure(tenant.id, "atol", operation, &reason) {
                JobResult::RetryLater(reason) if last => JobResult::DeadLetter(reason),
                other => other,
            });
        }
    };
    match result {
        JobResult::RetryLater(reason) if last => give_up(format!("not registered after all retries: {reason}")).await,
        other => Ok(other),
    }
}

/// Why a step with ATOL has to be tried again later.
enum Retry {
    /// Not known yet (timeout, still processing): the next try asks again.
    Later(String),
    /// The merchant's configuration was refused during the named operation.
    Configuration(&'static str, String),
}

impl From<AtolError> for Retry {
    fn from(e: AtolError) -> Retry {
        match e {
            AtolError::Configuration(reason) => Retry::Configuration("register", reason),
            other => Retry::Later(other.to_string()),
        }
    }
}

/// One step with ATOL: register the attempt if it has no document there yet,
/// else read its report. `Err` is why to try again later.
async fn step(
    to: &Registrar<'_>,
    tenant: &Tenant,
    account: &AtolAccount,
    row: &ReceiptRow,
    now: DateTime<Utc>,
) -> Result<Learned, Retry> {
    let Some(uuid) = &row.provider_uuid else {
        let receipt: Receipt =
            serde_json::from_str(&row.document).map_err(|e| Retry::Later(format!("stored receipt: {e}")))?;
        let doc = Document {
            external_id: external_id(row),
            timestamp: crate::gateways::atol::format_timestamp(now),
            service: to.public_url.map(|base| Service {
                callback_url: format!("{}/v1/webhooks/atol/{}", base.trim_end_matches('/'), tenant.id),
            }),
            receipt,
        };
        let op = if row.kind == ReceiptKind::Income { Operation::Sell } else { Operation::SellRefund };
        return match to.api.register(account, op, &doc).await {
            Ok(Accepted::New { uuid }) | Ok(Accepted::AlreadyExists { uuid: Some(uuid) }) => {
                Ok(Learned::Accepted(uuid))
            }
            Ok(Accepted::AlreadyExists { uuid: None }) => {
                Err(Retry::Later("ATOL already has this attempt but named no uuid".into()))
            }
            Err(AtolError::Rejected(f)) => Ok(Learned::Failed(describe(&f))),
            Err(e) => Err(e.into()),
        };
    };
    match to.api.report(account, uuid).await {
        Ok(report) => match report.status {
            ReportStatus::Done(payload) => Ok(Learned::Registered(Box::new(payload))),
            ReportStatus::Wait => Err(Retry::Later("ATOL is still processing the receipt".into())),
            ReportStatus::Fail(f) if DOCUMENT_ERRORS.contains(&f.code) => Ok(Learned::Failed(describe(&f))),
            ReportStatus::Fail(f) => Ok(Learned::AttemptFailed(describe(&f))),
        },
        Err(AtolError::Configuration(reason)) => Err(Retry::Configuration("report", reason)),
        Err(e) => Err(Retry::Later(e.to_string())),
    }
}

/// ATOL's callback: only a hint that a report is ready. The receipt it names (by
/// the provider's uuid) is polled by the worker; nothing is taken from the body.
pub async fn hint(conn: &mut AsyncPgConnection, now: DateTime<Utc>, tenant: &Tenant, body: &[u8]) -> ServiceResult<()> {
    let uuid = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("uuid").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| ServiceError::invalid("invalid_callback", "an ATOL callback needs the document's uuid"))?;
    let found: Option<(Uuid, Uuid)> = receipts::table
        .filter(receipts::tenant_id.eq(tenant.id))
        .filter(receipts::provider_uuid.eq(&uuid))
        .filter(receipts::status.eq(ReceiptStatus::Pending))
        .select((receipts::id, receipts::payment_id))
        .first(conn)
        .await
        .optional()?;
    if let Some((id, payment_id)) = found {
        let (_, ordering) = ordering_of(conn, payment_id).await?;
        enqueue(conn, now, tenant.id, ordering, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Money;
    use crate::domain::tenant::{FiscalProvider, SettlementSign, TaxationSystem, VatType};

    fn settings(vat: VatType, object: u8) -> FiscalSettings {
        FiscalSettings {
            inn: "7700000000".into(),
            sno: TaxationSystem::UsnIncome,
            vat,
            settlement_sign: SettlementSign::FullPrepayment,
            payment_object: object,
            payment_address: "https://seller.ru".into(),
            email: "billing@seller.ru".into(),
            provider: FiscalProvider { login: "l".into(), password: "p".into(), group_code: "g".into(), api_url: None },
        }
    }

    #[test]
    fn refunds_take_the_lines_in_order_after_earlier_refunds() {
        let now = chrono::Utc::now();
        let payer = crate::db::payments::Payer {
            tenant_id: Uuid::nil(),
            gateway: "cloudpayments",
            customer_id: Uuid::nil(),
            subscription_id: None,
        };
        let rub =
            |v: i64| Money::new(Decimal::new(v, 2), crate::domain::money::Currency::parse("RUB").unwrap()).unwrap();
        let mut p =
            PaymentRow::pending(payer, crate::domain::states::PaymentKind::Renewal, rub(150000), "Тариф".into(), now);
        let lines = [
            super::super::payments::Line::new(crate::domain::states::LineKind::Tariff, "Тариф".into(), rub(100000)),
            super::super::payments::Line::new(
                crate::domain::states::LineKind::Overage,
                "Сообщения сверх лимита".into(),
                rub(50000),
            ),
        ];
        super::super::payments::set_lines(&mut p, &lines).unwrap();
        let d = |v: i64| Decimal::new(v, 2);
        assert_eq!(refund_lines(&p, d(0), d(40000)).unwrap(), vec![("Тариф".to_owned(), d(40000))]);
        assert_eq!(
            refund_lines(&p, d(80000), d(40000)).unwrap(),
            vec![("Тариф".to_owned(), d(20000)), ("Сообщения сверх лимита".to_owned(), d(20000))]
        );
        assert!(refund_lines(&p, d(120000), d(40000)).is_err());
    }

    #[test]
    fn a_plan_override_wins_over_the_tenant() {
        let lines = [("Подписка Pro, 1 мес".to_owned(), Decimal::new(99000, 2))];
        let doc = document(&settings(VatType::Vat22, 4), None, "a@b.ru", &lines).unwrap();
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("vat22", 4));
        let licence = PlanFiscal { vat: Some(VatType::None), payment_object: Some(9) };
        let doc = document(&settings(VatType::Vat22, 4), Some(licence), "a@b.ru", &lines).unwrap();
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("none", 9));
        assert_eq!(doc.company.sno, "usn_income");
        assert_eq!(doc.items[0].payment_method, "full_prepayment");
        assert_eq!(doc.payments, vec![Payment { kind: 1, sum: Decimal::new(99000, 2) }]);
    }
}
