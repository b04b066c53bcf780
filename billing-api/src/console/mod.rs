//! The operator console under `/console/`: server-rendered HTML (maud: escaped by
//! construction; no JavaScript, no build step) over the same services as the API,
//! so a page and `GET /v1/...` never disagree.
//!
//! Signing in takes the operator token (`BILLING_ADMIN_TOKEN`); the session is an
//! HttpOnly, `SameSite=Strict` cookie holding its issue time, a random id and an
//! HMAC keyed by the token (never the token), valid for 8 hours, until the token
//! changes, or until it is signed out on any replica (`session`). Every action is
//! a POST form answered with a 303 back to its page; forms from another origin are
//! refused. Pages carry a Content-Security-Policy
//! (no scripts, no framing, forms only to the console) and `Cache-Control:
//! no-store`. Without an operator token the console is off (404), like the
//! operator API.

mod chart;
mod layout;
mod queues;
mod session;
mod tenants;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION};
use actix_web::web::{self, Data};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload};
use billing_shared::error::ServiceError;
use billing_shared::services::tenants::{self as tenant_service, Tenant};

use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::redirect("/console", "/console/"))
        .service(session::login_form)
        .service(session::login)
        .service(session::logout)
        .service(tenants::index)
        .service(tenants::overview)
        .service(tenants::subscriptions)
        .service(tenants::timeline)
        .service(queues::collections)
        .service(queues::refund_queue)
        .service(queues::review)
        .service(queues::receipt_queue)
        .service(queues::resend_receipt)
        .service(queues::dead_letter_page)
        .service(queues::replay);
}

/// What a console page can end in besides its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No operator token is configured: the console does not exist (404).
    Disabled,
    /// No valid session: to the sign-in form (303).
    SignIn,
    /// A refusal or failure of the use case, shown as a page with its status and
    /// stable code (the same ones the API answers).
    Api(ApiError),
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsoleError::Disabled => f.write_str("the console is off: BILLING_ADMIN_TOKEN is not set"),
            ConsoleError::SignIn => f.write_str("sign in with the operator token"),
            ConsoleError::Api(e) => e.fmt(f),
        }
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<ServiceError> for ConsoleError {
    fn from(e: ServiceError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::Disabled => StatusCode::NOT_FOUND,
            ConsoleError::SignIn => StatusCode::SEE_OTHER,
            ConsoleError::Api(e) => e.status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ConsoleError::SignIn => see_other("/console/login"),
            ConsoleError::Disabled => {
                html(StatusCode::NOT_FOUND, layout::message("Not found", "not_found", &self.to_string()))
            }
            // The API's own detail: for a server error it says nothing internal
            // (the log has the error chain).
            ConsoleError::Api(e) => {
                html(e.status, layout::message(e.status.canonical_reason().unwrap_or("Error"), &e.code, &e.detail))
            }
        }
    }
}

/// A page: the console's answers are HTML (`text/html; charset=utf-8`).
pub type Page = Result<HttpResponse, ConsoleError>;

/// What a console page may load and do: its own inline style, forms to itself;
/// no scripts, no framing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn html(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")))
        .insert_header((CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(markup.into_string())
}

/// 200 with the page.
fn ok(markup: maud::Markup) -> Page {
    Ok(html(StatusCode::OK, markup))
}

/// 303 to `to` (a path of the console): where a form's action lands.
fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((LOCATION, to.to_owned())).finish()
}

/// A signed-in operator: the request carries the session cookie of the current
/// operator token.
pub struct Operator;

impl FromRequest for Operator {
    type Error = ConsoleError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { session::check(req).await.map(|()| Operator) })
    }
}

/// The application state (always registered by `Application::build`).
fn state_of(req: &HttpRequest) -> Result<Data<AppState>, ConsoleError> {
    req.app_data::<Data<AppState>>()
        .cloned()
        .ok_or_else(|| ConsoleError::Api(ServiceError::Internal("application state missing".into()).into()))
}

/// The tenant a console path names; 404 `tenant_not_found` for an unknown or
/// malformed id.
async fn tenant_of(state: &AppState, raw: &str) -> Result<Tenant, ConsoleError> {
    let id = crate::routes::parse_id(raw, "tenant")?;
    let mut conn = state.conn().await?;
    Ok(tenant_service::load(&mut conn, id).await?)
}
