//! HTTP control of the simulator for the demo (`/sim/atol/...`).

use actix_web::HttpResponse;
use actix_web::web::{Data, Json};
use serde::Deserialize;
use serde_json::json;

use super::{AtolScript, AtolSim};

#[derive(Deserialize)]
pub(super) struct AccountRequest {
    login: String,
    password: String,
    group_code: String,
}

pub(super) async fn http_add_account(sim: Data<AtolSim>, req: Json<AccountRequest>) -> HttpResponse {
    sim.add_account(&req.login, &req.password, &req.group_code);
    HttpResponse::NoContent().finish()
}

pub(super) async fn http_script(sim: Data<AtolSim>, req: Json<Vec<AtolScript>>) -> HttpResponse {
    sim.script(&req);
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
pub(super) struct Settings {
    processing_ms: Option<u64>,
    slow_ms: Option<u64>,
}

pub(super) async fn http_settings(sim: Data<AtolSim>, req: Json<Settings>) -> HttpResponse {
    if let Some(ms) = req.processing_ms {
        sim.set_processing_ms(ms);
    }
    if let Some(ms) = req.slow_ms {
        sim.set_slow_ms(ms);
    }
    HttpResponse::NoContent().finish()
}

pub(super) async fn http_expire(sim: Data<AtolSim>) -> HttpResponse {
    sim.expire_tokens();
    HttpResponse::NoContent().finish()
}

pub(super) async fn http_release(sim: Data<AtolSim>) -> HttpResponse {
    sim.release_all();
    HttpResponse::NoContent().finish()
}

pub(super) async fn http_documents(sim: Data<AtolSim>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"documents": sim.documents(), "callbacks": sim.callbacks()}))
}
