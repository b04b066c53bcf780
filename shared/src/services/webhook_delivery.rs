//! Outgoing webhooks: every event is POSTed to the tenant's `webhook_url`, signed
//! `Billing-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (`t` is real time). While a rotated secret is in its grace hour, a second `v1`
//! signed with the previous secret is added. Deliveries are recorded per event id,
//! so a redelivered message is not POSTed again once delivered.

use std::time::Duration;
use tracing::Instrument;

use serde::Deserialize;
use uuid::Uuid;

use super::JobResult;
use super::tenants::{self, Tenant};
use crate::clock::real_now;
use crate::db::PgPool;
use crate::db::webhook_deliveries::{self, Delivery};
use crate::domain::ids::TenantId;
use crate::domain::secret::Secret;
use crate::domain::states::DeliveryStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::signing::hmac_sha256;

/// The header value for `body` signed at unix time `t`.
pub fn signature_header(tenant: &Tenant, t: i64, body: &[u8]) -> String {
    let sign = |secret: &Secret| {
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(body);
        hex::encode(hmac_sha256(secret.expose().as_bytes(), &message))
    };
    let mut header = format!("t={t},v1={}", sign(&tenant.webhook_secret));
    if let Some((prev, until)) = &tenant.webhook_secret_prev
        && *until > real_now()
    {
        header.push_str(&format!(",v1={}", sign(prev)));
    }
    header
}

#[derive(Deserialize)]
struct EnvelopeHead {
    id: Uuid,
    tenant_id: TenantId,
}

/// Delivers one event (the exact bytes published) to its tenant's webhook URL.
/// `attempt` counts from 1; `last` is true on the final try before dead-lettering.
pub async fn deliver(
    pool: &PgPool,
    http: &reqwest::Client,
    body: &[u8],
    attempt: u32,
    last: bool,
) -> ServiceResult<JobResult> {
    let Ok(head) = serde_json::from_slice::<EnvelopeHead>(body) else {
        return Err(ServiceError::invalid("invalid_event", "the message is not an event envelope"));
    };
    let tenant = match tenants::cached(head.tenant_id) {
        Some(t) => t,
        None => match tenants::load_cached(&mut *pool.get().await?, head.tenant_id).await {
            Ok(t) => t,
            Err(ServiceError::NotFound { .. }) => return Ok(JobResult::Done),
            Err(e) => return Err(e),
        },
    };
    // No endpoint configured: nothing to deliver, nothing to record.
    let Some(url) = tenant.webhook_url.clone() else {
        return Ok(JobResult::Done);
    };
    let mut conn = pool.get().await?;
    if webhook_deliveries::status(&mut conn, head.id).await? == Some(DeliveryStatus::Delivered) {
        return Ok(JobResult::Done);
    }
    let attempts = i32::try_from(attempt).unwrap_or(i32::MAX);
    drop(conn);
    let signature = signature_header(&tenant, real_now().timestamp(), body);
    let span = tracing::info_span!(
        "webhook.deliver",
        event_id = %head.id,
        status = tracing::field::Empty,
        otel.status_code = tracing::field::Empty
    );
    let mut request = http
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Billing-Signature", signature)
        .header("Billing-Event-Id", head.id.to_string());
    // The tenant's endpoint can continue the trace (W3C Trace Context).
    if let Some(tp) = crate::trace::traceparent_of(&span) {
        request = request.header(crate::trace::TRACEPARENT, tp);
    }
    let sent = request.body(body.to_vec()).send().instrument(span.clone()).await;
    match &sent {
        Ok(res) => {
            span.record("status", res.status().as_u16());
            if !res.status().is_success() {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
    let (ok, status, error) = match sent {
        Ok(res) if res.status().is_success() => (true, Some(i32::from(res.status().as_u16())), None),
        Ok(res) => (false, Some(i32::from(res.status().as_u16())), Some(format!("HTTP {}", res.status()))),
        Err(e) => (false, None, Some(e.to_string())),
    };
    let mut conn = pool.get().await?;
    let state = if ok {
        DeliveryStatus::Delivered
    } else if last {
        DeliveryStatus::Dead
    } else {
        DeliveryStatus::Failing
    };
    let delivery = Delivery {
        event_id: head.id,
        tenant_id: head.tenant_id,
        url: &url,
        status: state,
        attempts,
        last_status: status,
        last_error: error.as_deref(),
    };
    webhook_deliveries::record(&mut conn, &delivery).await?;
    metrics::counter!("billing_webhook_deliveries_total", "outcome" => state.as_str()).increment(1);
    Ok(if ok {
        JobResult::Done
    } else {
        JobResult::RetryLater(format!("webhook {url}: {}", error.unwrap_or_default()))
    })
}

/// HTTP client for webhook deliveries.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ServiceError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ServiceError::Internal(format!("http client: {e}")))
}
