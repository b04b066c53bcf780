//! Signing in to the console with the operator token, and out.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, HttpResponse, get, post};
use billing_shared::signing::{hmac_sha256, sha256};
use maud::html;
use serde::Deserialize;

use super::{ConsoleError, Page, layout, ok, see_other, state_of};
use crate::state::AppState;

/// The session cookie's name.
const COOKIE: &str = "billing_console";
/// A session lasts this long, then the operator signs in again (seconds).
const SESSION_SECONDS: i64 = 8 * 3600;

/// The session cookie's value for an operator token: hex HMAC-SHA256 of a fixed
/// label keyed by the token. Changing the token ends every session.
fn session_value(token: &str) -> String {
    hex::encode(hmac_sha256(token.as_bytes(), b"billing console session v1"))
}

/// Whether `req` carries the session of the configured operator token (digests
/// compared, so the time taken does not depend on where they differ).
pub(super) fn check(req: &HttpRequest) -> Result<(), ConsoleError> {
    let state = state_of(req)?;
    let token = state.admin_token.as_ref().ok_or(ConsoleError::Disabled)?;
    let given = req.cookie(COOKIE).ok_or(ConsoleError::SignIn)?;
    if sha256(given.value().as_bytes()) == sha256(session_value(token.expose()).as_bytes()) {
        Ok(())
    } else {
        Err(ConsoleError::SignIn)
    }
}

fn session_cookie(value: String, max_age_seconds: i64) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_seconds))
        .finish()
}

fn form(failed: bool) -> maud::Markup {
    layout::page(
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
pub(super) async fn login(state: Data<AppState>, body: Form<Login>) -> Page {
    let token = state.admin_token.as_ref().ok_or(ConsoleError::Disabled)?;
    if sha256(body.token.as_bytes()) != sha256(token.expose().as_bytes()) {
        return Ok(HttpResponse::Unauthorized()
            .content_type("text/html; charset=utf-8")
            .body(form(true).into_string()));
    }
    let mut res = see_other("/console/");
    res.add_cookie(&session_cookie(session_value(token.expose()), SESSION_SECONDS)).map_err(|e| {
        tracing::error!(error = %e, "could not set the console session cookie");
        ConsoleError::Api(crate::error::ApiError::internal())
    })?;
    Ok(res)
}

/// `POST /console/logout`: the cookie removed, 303 to the sign-in form.
#[post("/console/logout")]
pub(super) async fn logout() -> HttpResponse {
    let mut res = see_other("/console/login");
    let mut gone = session_cookie(String::new(), 0);
    gone.make_removal();
    // A header value built from a cookie we made always parses.
    if res.add_cookie(&gone).is_err() {
        tracing::error!("could not clear the console session cookie");
    }
    res
}
