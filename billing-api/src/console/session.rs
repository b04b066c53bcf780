//! Signing in to the console with the operator token, and out.
//!
//! The session cookie is `<issued unix seconds>.<random id>.<hex HMAC-SHA256>` of a
//! fixed label, the issue time and the id, keyed by the operator token: it expires
//! on the server [`SESSION_SECONDS`] after sign-in whatever the browser keeps, and
//! changing the token ends every session. Signing out removes it from the browser
//! and records its id (`console_signed_out`), so every replica refuses a copy of it
//! too. It is HttpOnly, `SameSite=Strict`, `Secure` when the request came over
//! https, and scoped to `/console`. Forms are refused when the browser says they
//! come from another origin ([`same_origin`]).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, get, post};
use billing_shared::clock::real_now;
use billing_shared::services::console;
use billing_shared::signing::{hmac_sha256, same_secret, verify_hmac_sha256};
use chrono::{DateTime, Utc};
use maud::html;
use serde::Deserialize;

use super::{ConsoleError, Page, html as page_html, layout, ok, see_other, state_of};
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
const COOKIE: &str = "billing_console";
/// A session lasts this long after sign-in (seconds), checked by the server.
pub const SESSION_SECONDS: i64 = 8 * 3600;

fn label(issued: i64, id: &str) -> String {
    format!("billing console session v2|{issued}|{id}")
}

/// The cookie value of session `id` of `token` issued at `issued` (unix seconds).
fn session_value(token: &str, issued: i64, id: &str) -> String {
    format!("{issued}.{id}.{}", hex::encode(hmac_sha256(token.as_bytes(), label(issued, id).as_bytes())))
}

/// A session cookie that verified: its id and when it expires.
#[derive(Debug, PartialEq)]
struct Session {
    id: String,
    expires_at: i64,
}

/// The session `value` holds when it is one of `token` issued less than
/// [`SESSION_SECONDS`] before `now`.
fn valid_session(value: &str, token: &str, now: i64) -> Option<Session> {
    let mut parts = value.splitn(3, '.');
    let (issued, id, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let (Ok(issued), Ok(tag)) = (issued.parse::<i64>(), hex::decode(tag)) else { return None };
    let fresh = (0..=SESSION_SECONDS).contains(&(now - issued));
    (fresh && !id.is_empty() && verify_hmac_sha256(token.as_bytes(), label(issued, id).as_bytes(), &tag))
        .then(|| Session { id: id.to_owned(), expires_at: issued + SESSION_SECONDS })
}

/// The live session `req` carries, signed out or not.
fn session_of(req: &HttpRequest, state: &AppState) -> Result<Session, ConsoleError> {
    let token = state.admin_token.as_ref().ok_or(ConsoleError::Disabled)?;
    let given = req.cookie(COOKIE).ok_or(ConsoleError::SignIn)?;
    valid_session(given.value(), token.expose(), real_now().timestamp()).ok_or(ConsoleError::SignIn)
}

/// Whether `req` carries a live session of the configured operator token that was
/// not signed out, and (for anything but GET) comes from the console's own pages.
pub(super) async fn check(req: HttpRequest) -> Result<(), ConsoleError> {
    let state = state_of(&req)?;
    let session = session_of(&req, &state)?;
    if req.method() != actix_web::http::Method::GET {
        same_origin(&req)?;
    }
    let mut conn = state.conn().await?;
    if console::signed_out(&mut conn, &session.id).await? {
        return Err(ConsoleError::SignIn);
    }
    Ok(())
}

/// Refuses (403 `cross_site_request`) a form another origin sent: the browser's
/// `Sec-Fetch-Site` is not `same-origin`, or its `Origin` is not this host.
/// Requests without either header (not from a browser) pass: they carry no
/// ambient cookie unless their sender has the session itself.
fn same_origin(req: &HttpRequest) -> Result<(), ConsoleError> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let site_ok = header("sec-fetch-site").is_none_or(|s| s == "same-origin");
    let host = req.connection_info().host().to_owned();
    let origin_ok = header("origin").is_none_or(|o| o.split_once("://").is_some_and(|(_, h)| h == host));
    if site_ok && origin_ok {
        Ok(())
    } else {
        Err(ConsoleError::Api(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "console forms are only accepted from the console's own pages",
        )))
    }
}

fn session_cookie(value: String, max_age_seconds: i64, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/console")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_seconds))
        .finish()
}

fn form(failed: bool) -> maud::Markup {
    layout::signed_out_page(
        "Sign in",
        html! {
            @if failed { div.problem #detail { "That is not the operator token." } }
            form method="post" action="/console/login" {
                label { "Operator token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /console/login`: the sign-in form.
#[get("/console/login")]
pub(super) async fn login_form(state: Data<AppState>) -> Page {
    if state.admin_token.is_none() {
        return Err(ConsoleError::Disabled);
    }
    ok(form(false))
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// `POST /console/login` (form `token`): with the operator token, a session cookie
/// and 303 to the tenants; else the form again with 401.
#[post("/console/login")]
pub(super) async fn login(req: HttpRequest, state: Data<AppState>, body: Form<Login>) -> Page {
    let token = state.admin_token.as_ref().ok_or(ConsoleError::Disabled)?;
    same_origin(&req)?;
    if !same_secret(&body.token, token.expose()) {
        return Ok(page_html(StatusCode::UNAUTHORIZED, form(true)));
    }
    let secure = req.connection_info().scheme() == "https";
    let id = uuid::Uuid::new_v4().simple().to_string();
    let value = session_value(token.expose(), real_now().timestamp(), &id);
    let mut res = see_other("/console/");
    res.add_cookie(&session_cookie(value, SESSION_SECONDS, secure)).map_err(|e| {
        tracing::error!(error = %e, "could not set the console session cookie");
        ConsoleError::Api(ApiError::internal())
    })?;
    Ok(res)
}

/// `POST /console/logout`: the session signed out on every replica (when the
/// request carries a live one), the cookie removed, 303 to the sign-in form.
#[post("/console/logout")]
pub(super) async fn logout(req: HttpRequest, state: Data<AppState>) -> Page {
    if let Ok(session) = session_of(&req, &state) {
        same_origin(&req)?;
        let expires_at = DateTime::<Utc>::from_timestamp(session.expires_at, 0)
            .ok_or_else(|| ConsoleError::Api(ApiError::internal()))?;
        state.transaction(async |conn, _| console::sign_out(conn, &session.id, expires_at, real_now()).await).await?;
    }
    let mut res = see_other("/console/login");
    let mut gone = session_cookie(String::new(), 0, false);
    gone.make_removal();
    // A header value built from a cookie we made always parses.
    if res.add_cookie(&gone).is_err() {
        tracing::error!("could not clear the console session cookie");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_for_its_token_until_it_expires() {
        let token = "operator-token-0123456789";
        let v = session_value(token, 1_000_000, "s1");
        let live = Some(Session { id: "s1".into(), expires_at: 1_000_000 + SESSION_SECONDS });
        assert_eq!(valid_session(&v, token, 1_000_000 + SESSION_SECONDS), live);
        assert_eq!(valid_session(&v, token, 1_000_001 + SESSION_SECONDS), None, "expired");
        assert_eq!(valid_session(&v, token, 999_999), None, "issued in the future");
        assert_eq!(valid_session(&v, "another-token-0123456789", 1_000_000), None, "another token");
        let forged = v.replacen("1000000.", "2000000.", 1);
        assert_eq!(valid_session(&forged, token, 2_000_000), None, "moved issue time");
        let renamed = v.replacen(".s1.", ".s2.", 1);
        assert_eq!(valid_session(&renamed, token, 1_000_000), None, "another session id");
        assert_eq!(valid_session("garbage", token, 1_000_000), None);
        assert_eq!(valid_session("1000000..00", token, 1_000_000), None);
    }
}
