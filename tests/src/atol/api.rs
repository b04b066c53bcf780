//! The ATOL Online v5 API proper: tokens, sell/sell_refund operations, reports.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, json};

use super::validate::{InDoc, validate};
use super::{AtolDocument, AtolScript, AtolSim, AtolSimError, error, now, refuse, report_json};

#[derive(Deserialize)]
pub(super) struct TokenRequest {
    login: String,
    pass: String,
}

pub(super) async fn http_token(sim: Data<AtolSim>, body: Bytes) -> HttpResponse {
    let mut st = sim.state();
    st.token_requests += 1;
    let req = serde_json::from_slice::<TokenRequest>(&body).ok();
    let group =
        req.and_then(|r| st.accounts.get(&r.login).filter(|a| a.password == r.pass).map(|a| a.group_code.clone()));
    let Some(group) = group else {
        let body =
            json!({"error": error(12, "Неверный логин или пароль", "system"), "token": null, "timestamp": now()});
        return HttpResponse::Unauthorized().json(body);
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    st.tokens.insert(token.clone(), group);
    HttpResponse::Ok().json(json!({"error": null, "token": token, "timestamp": now()}))
}

fn new_doc(
    group: &str,
    op: &str,
    external_id: &str,
    request: Value,
    raw: &[u8],
    callback_url: Option<String>,
) -> AtolDocument {
    AtolDocument {
        uuid: uuid::Uuid::new_v4().to_string(),
        group_code: group.into(),
        op: op.into(),
        external_id: external_id.into(),
        status: "wait".into(),
        request,
        raw: String::from_utf8_lossy(raw).into_owned(),
        total: None,
        payload: None,
        error: None,
        callback_url,
        timestamp: now(),
    }
}

fn operation_answer(status: StatusCode, d: &AtolDocument, err: Option<AtolSimError>) -> HttpResponse {
    let body = json!({"uuid": d.uuid, "status": d.status, "error": err, "timestamp": now()});
    HttpResponse::build(status).json(body)
}

pub(super) async fn http_operation(
    sim: Data<AtolSim>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> HttpResponse {
    let (group, op) = path.into_inner();
    sim.state().operation_requests += 1;
    if let Some(refusal) = sim.refuse_token(&req, &group) {
        return refusal;
    }
    if op != "sell" && op != "sell_refund" {
        return refuse(StatusCode::BAD_REQUEST, 31, &format!("Операция {op} не поддерживается"));
    }
    let content_type = req.headers().get("Content-Type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            41,
            "Ожидается Content-Type: application/json; charset=utf-8",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, 40, "Некорректный JSON");
    };
    let external_id = request.get("external_id").and_then(Value::as_str).unwrap_or("").to_owned();
    let callback_url = request.pointer("/service/callback_url").and_then(Value::as_str).map(str::to_owned);
    let mut doc = new_doc(&group, &op, &external_id, request, &body, callback_url);
    let checked = serde_json::from_slice::<InDoc>(&body).map_err(|e| format!("Некорректная структура: {e}"));
    let (script, processing, slow) = {
        let mut st = sim.state();
        // A failed document's external_id may be sent again; a live one answers 33.
        let live = st.live_doc(&group, &external_id);
        if let Some(existing) = live.filter(|_| !external_id.is_empty()) {
            let err = error(33, &format!("Документ с external_id {external_id} уже существует"), "system");
            return operation_answer(StatusCode::BAD_REQUEST, existing, Some(err));
        }
        match checked.and_then(|d| validate(&d)) {
            Err(text) => {
                doc.status = "fail".into();
                doc.error = Some(error(32, &text, "system"));
                st.push_doc(doc.clone());
                return operation_answer(StatusCode::BAD_REQUEST, &doc, doc.error.clone());
            }
            Ok(total) => doc.total = Some(total),
        }
        let script = st.scripts.pop_front().unwrap_or(AtolScript::Done);
        match script {
            AtolScript::ServerError => {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, 50, "Внутренняя ошибка сервера");
            }
            AtolScript::Reject32 => {
                doc.status = "fail".into();
                doc.error = Some(error(32, "Ошибка валидации входящего документа (сценарий)", "system"));
                st.push_doc(doc.clone());
                return operation_answer(StatusCode::BAD_REQUEST, &doc, doc.error.clone());
            }
            AtolScript::NeverProcess => st.held.push(doc.uuid.clone()),
            _ => {}
        }
        st.push_doc(doc.clone());
        (script, st.processing_ms, st.slow_ms)
    };
    if script != AtolScript::NeverProcess {
        let (sim, uuid) = (sim.get_ref().clone(), doc.uuid.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(processing)).await;
            sim.complete(&uuid, script == AtolScript::FailTimeout);
        });
    }
    if script == AtolScript::Slow {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    operation_answer(StatusCode::OK, &doc, None)
}

pub(super) async fn http_report(
    sim: Data<AtolSim>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (group, uuid) = path.into_inner();
    sim.state().report_requests += 1;
    if let Some(refusal) = sim.refuse_token(&req, &group) {
        return refusal;
    }
    match sim.document(&uuid).filter(|d| d.group_code == group) {
        Some(doc) => HttpResponse::Ok().content_type("application/json; charset=utf-8").body(report_json(&doc)),
        None => {
            let err = error(30, &format!("Не найден документ с uuid {uuid}"), "system");
            HttpResponse::BadRequest().json(json!({"uuid": uuid, "status": "fail", "error": err, "timestamp": now()}))
        }
    }
}
