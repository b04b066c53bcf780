//! `billing-ops`: what an operator does by hand, without curl — a client of the
//! running API's operator endpoints (`/v1/admin/*`, `BILLING_ADMIN_TOKEN`) and, for
//! lookups in one tenant's data, of its tenant endpoints (that tenant's API key).
//! The database-side commands stay with the server binary: `billing-api migrate
//! [--check]` and `billing-api audit [--tenant ID]`.
//!
//! Exit codes: 0 done (the API's JSON answer on stdout), 1 the API refused (its
//! problem+json on stderr), 2 usage, 3 the API could not be reached.

use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde_json::Value;

const USAGE: &str = "\
billing-ops — operator commands against a running billing-api

usage: billing-ops [--api URL] COMMAND [ARGS]

  tenant create FILE             create a tenant from a JSON file (`-` for stdin); prints it
                                 with its API key and webhook secret, shown only once
  tenant patch ID FILE           merge-patch a tenant (RFC 7396) from a JSON file
  tenant rotate-keys ID [--webhook-secret] [--keep-api-key]
                                 new API key (and webhook secret); the old ones work for an hour
  dead-letters list [--queue Q] [--all] [--limit N]
                                 what the worker gave up on, newest first (--all: replayed too)
  dead-letters replay QUEUE      put QUEUE's dead letters back to work (a stuck receipt is
                                 re-sent by replaying billing.receipts)
  payments [--customer ID]       a tenant's payments (needs --key)
  receipts [--payment ID]        a tenant's receipts with their fiscal status (needs --key)

options:
  --api URL     the API (default: $BILLING_API_URL, else http://127.0.0.1:8080)
  --key KEY     a tenant's API key, for payments and receipts (default: $BILLING_API_KEY)
  operator commands send $BILLING_ADMIN_TOKEN

exit codes: 0 done, 1 the API refused (problem+json on stderr), 2 usage, 3 API unreachable
";

/// What went wrong, and the exit code it maps to.
enum Failure {
    Usage(String),
    Refused(StatusCode, String),
    Unreachable(String),
}

/// One HTTP call to make: method, path (with query), body, and which credential.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    tenant_key: bool,
}

#[allow(clippy::print_stdout)] // the API's answer is the command's output
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    billing_shared::telemetry::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args).await {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(why)) => {
            eprintln!("billing-ops: {why}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(status, body)) => {
            eprintln!("billing-ops: the API answered {status}: {body}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(why)) => {
            eprintln!("billing-ops: the API could not be reached: {why}");
            ExitCode::from(3)
        }
    }
}

async fn run(mut args: Vec<String>) -> Result<String, Failure> {
    if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
        return Ok(USAGE.trim_end().to_owned());
    }
    let api = take_value(&mut args, "--api")?
        .or_else(|| std::env::var("BILLING_API_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let key = take_value(&mut args, "--key")?.or_else(|| std::env::var("BILLING_API_KEY").ok());
    let call = parse(args)?;
    let token = if call.tenant_key {
        key.ok_or_else(|| Failure::Usage("this command needs a tenant's API key (--key or BILLING_API_KEY)".into()))?
    } else {
        std::env::var("BILLING_ADMIN_TOKEN")
            .map_err(|_| Failure::Usage("operator commands need BILLING_ADMIN_TOKEN".into()))?
    };
    send(&api, &token, call).await
}

/// Reads the command words left once the options are taken.
fn parse(args: Vec<String>) -> Result<Call, Failure> {
    let mut args = args;
    let flag = |args: &mut Vec<String>, name: &str| {
        let at = args.iter().position(|a| a == name);
        at.map(|i| args.remove(i)).is_some()
    };
    let owned = args.clone();
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    let call = |method: Method, path: String, body: Option<Value>| Call { method, path, body, tenant_key: false };
    Ok(match words.as_slice() {
        ["tenant", "create", file] => call(Method::POST, "/v1/admin/tenants".into(), Some(read_json(file)?)),
        ["tenant", "patch", id, file] => call(Method::PATCH, format!("/v1/admin/tenants/{id}"), Some(read_json(file)?)),
        ["tenant", "rotate-keys", id, ..] => {
            let id = (*id).to_owned();
            let webhook_secret = flag(&mut args, "--webhook-secret");
            let api_key = !flag(&mut args, "--keep-api-key");
            no_more(&args, 3)?;
            let body = serde_json::json!({"api_key": api_key, "webhook_secret": webhook_secret});
            call(Method::POST, format!("/v1/admin/tenants/{id}/keys/rotate"), Some(body))
        }
        ["dead-letters", "list", ..] => {
            let all = flag(&mut args, "--all");
            let mut query = vec![("include_replayed", all.to_string())];
            query.extend(take_value(&mut args, "--queue")?.map(|q| ("queue", q)));
            query.extend(take_value(&mut args, "--limit")?.map(|n| ("limit", n)));
            no_more(&args, 2)?;
            call(Method::GET, with_query("/v1/admin/dead-letters", &query), None)
        }
        ["dead-letters", "replay", queue] => call(Method::POST, format!("/v1/admin/dead-letters/{queue}/replay"), None),
        ["payments", ..] | ["receipts", ..] => {
            let (path, option, param) = if words[0] == "payments" {
                ("/v1/payments", "--customer", "customer_id")
            } else {
                ("/v1/receipts", "--payment", "payment_id")
            };
            let query: Vec<(&str, String)> = take_value(&mut args, option)?.map(|v| (param, v)).into_iter().collect();
            no_more(&args, 1)?;
            Call { method: Method::GET, path: with_query(path, &query), body: None, tenant_key: true }
        }
        _ => return Err(Failure::Usage(format!("unknown command: {}", args.join(" ")))),
    })
}

/// Removes `--name VALUE` from `args`, returning the value.
fn take_value(args: &mut Vec<String>, name: &str) -> Result<Option<String>, Failure> {
    let Some(at) = args.iter().position(|a| a == name) else { return Ok(None) };
    if at + 1 >= args.len() {
        return Err(Failure::Usage(format!("{name} needs a value")));
    }
    let value = args.remove(at + 1);
    args.remove(at);
    Ok(Some(value))
}

/// Refuses words beyond the command's `expected` ones (an option misspelt).
fn no_more(args: &[String], expected: usize) -> Result<(), Failure> {
    match args.get(expected) {
        Some(extra) => Err(Failure::Usage(format!("unexpected argument: {extra}"))),
        None => Ok(()),
    }
}

fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let encoded = serde_urlencoded::to_string(query).unwrap_or_default();
    format!("{path}?{encoded}")
}

/// A JSON document from a file, or from stdin for `-`.
fn read_json(file: &str) -> Result<Value, Failure> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure::Usage(format!("reading stdin: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| Failure::Usage(format!("reading {file}: {e}")))?
    };
    serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("{file} is not JSON: {e}")))
}

async fn send(api: &str, token: &str, call: Call) -> Result<String, Failure> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let url = format!("{}{}", api.trim_end_matches('/'), call.path);
    let mut request = client.request(call.method, &url).bearer_auth(token);
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(Failure::Refused(status, text));
    }
    // Pretty-printed when it is JSON (it always is), as received otherwise.
    Ok(serde_json::from_str::<Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text))
}
