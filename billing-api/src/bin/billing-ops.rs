//! `billing-ops`: what an operator does by hand, without curl — a client of the
//! running API's operator endpoints (`/v1/admin/*`, `BILLING_ADMIN_TOKEN`) and, for
//! lookups in one tenant's data, of its tenant endpoints (that tenant's API key).
//! The database-side commands stay with the server binary: `billing-api migrate
//! [--check]` and `billing-api audit [--tenant ID]`.
//!
//! Exit codes: 0 done (the API's JSON answer on stdout), 1 the API refused (its
//! problem+json on stderr), 2 usage, 3 the API could not be reached.

use std::process::ExitCode;

use billing_shared::services::idempotency::MAX_KEY_LEN;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

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
  dead-letters replay QUEUE      put QUEUE's dead letters back to work
  receipts resend ID             send a failed receipt (or a pending one whose job is dead)
                                 to the fiscal provider again, never registering it twice
  payments [--customer ID]       a tenant's payments (needs --key)
  receipts [--payment ID]        a tenant's receipts with their fiscal status (needs --key)

options:
  --api URL     the API (default: $BILLING_API_URL, else http://127.0.0.1:8080)
  --key KEY     a tenant's API key, for payments and receipts (default: $BILLING_API_KEY)
  --idempotency-key KEY
                tenant create, rotate-keys and receipts resend: the Idempotency-Key sent
                (default: a new random one). When the API could not be reached (exit 3) the
                key used is printed: retry with it, and a request that did go through is not
                done twice (a resend's first answer is replayed; for tenant create and
                rotate-keys the API answers 409 idempotent_replay_unavailable: the answer
                carried secrets and is not kept; rotate the keys to get new ones)
  operator commands send $BILLING_ADMIN_TOKEN; IDs are UUIDs

exit codes: 0 done, 1 the API refused (problem+json on stderr), 2 usage, 3 API unreachable
";

/// What went wrong, and the exit code it maps to.
enum Failure {
    Usage(String),
    Refused(StatusCode, String),
    Unreachable(String),
}

/// One HTTP call to make.
struct Call {
    method: Method,
    /// Path segments after the API's base URL, percent-encoded when the URL is built.
    path: Vec<String>,
    /// Query parameters, form-encoded when the URL is built.
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// Sends the tenant's API key rather than the operator token.
    tenant_key: bool,
    /// Sent as `Idempotency-Key` (the admin POSTs that accept one).
    idempotency_key: Option<String>,
}

impl Call {
    fn admin(method: Method, path: &[&str], body: Option<Value>) -> Call {
        Call {
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body,
            tenant_key: false,
            idempotency_key: None,
        }
    }
}

#[allow(clippy::print_stdout)] // the API's answer is the command's output
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    billing_shared::telemetry::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", USAGE.trim_end());
        return ExitCode::SUCCESS;
    }
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
    let api = take_value(&mut args, "--api")?
        .or_else(|| std::env::var("BILLING_API_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let key = take_value(&mut args, "--key")?.or_else(|| std::env::var("BILLING_API_KEY").ok());
    let call = parse(args)?;
    let url = url_of(&api, &call)?;
    let token = if call.tenant_key {
        key.ok_or_else(|| Failure::Usage("this command needs a tenant's API key (--key or BILLING_API_KEY)".into()))?
    } else {
        std::env::var("BILLING_ADMIN_TOKEN")
            .map_err(|_| Failure::Usage("operator commands need BILLING_ADMIN_TOKEN".into()))?
    };
    send(url, &token, call).await
}

/// Reads the command once the global options are taken: its words first, then its
/// own options (anywhere after the words), then exactly its positional arguments.
fn parse(mut args: Vec<String>) -> Result<Call, Failure> {
    if args.is_empty() {
        return Err(Failure::Usage("no command given".into()));
    }
    let first = args.remove(0);
    let command = match first.as_str() {
        "tenant" | "dead-letters" if !args.is_empty() => format!("{first} {}", args.remove(0)),
        // Options may come before the word (`receipts --payment P resend ID` is a
        // resend, and refused for its option); no payment id is the word `resend`.
        "receipts" if args.iter().any(|a| a == "resend") => {
            args.retain(|a| a != "resend");
            format!("{first} resend")
        }
        _ => first,
    };
    Ok(match command.as_str() {
        "tenant create" => {
            let idempotency_key = idempotency_key(&mut args)?;
            let [file] = positionals(args, &command)?;
            Call { idempotency_key, ..Call::admin(Method::POST, &["v1", "admin", "tenants"], Some(read_json(&file)?)) }
        }
        "tenant patch" => {
            let [id, file] = positionals(args, &command)?;
            let id = uuid(&id, "tenant id")?;
            Call::admin(Method::PATCH, &["v1", "admin", "tenants", &id], Some(read_json(&file)?))
        }
        "tenant rotate-keys" => {
            let webhook_secret = take_flag(&mut args, "--webhook-secret");
            let api_key = !take_flag(&mut args, "--keep-api-key");
            let idempotency_key = idempotency_key(&mut args)?;
            let [id] = positionals(args, &command)?;
            let id = uuid(&id, "tenant id")?;
            let body = serde_json::json!({"api_key": api_key, "webhook_secret": webhook_secret});
            let path = ["v1", "admin", "tenants", &id, "keys", "rotate"];
            Call { idempotency_key, ..Call::admin(Method::POST, &path, Some(body)) }
        }
        "dead-letters list" => {
            let mut query = vec![("include_replayed", take_flag(&mut args, "--all").to_string())];
            query.extend(take_value(&mut args, "--queue")?.map(|q| ("queue", q)));
            query.extend(take_value(&mut args, "--limit")?.map(|n| ("limit", n)));
            let [] = positionals(args, &command)?;
            Call { query, ..Call::admin(Method::GET, &["v1", "admin", "dead-letters"], None) }
        }
        "dead-letters replay" => {
            let [queue] = positionals(args, &command)?;
            // Any other name is percent-encoded into the path; these would change it.
            if matches!(queue.as_str(), "" | "." | "..") {
                return Err(Failure::Usage(format!("{queue:?} is not a queue name")));
            }
            Call::admin(Method::POST, &["v1", "admin", "dead-letters", &queue, "replay"], None)
        }
        "receipts resend" => {
            let idempotency_key = idempotency_key(&mut args)?;
            let [id] = positionals(args, &command)?;
            let id = uuid(&id, "receipt id")?;
            Call { idempotency_key, ..Call::admin(Method::POST, &["v1", "admin", "receipts", &id, "resend"], None) }
        }
        "payments" | "receipts" => {
            let (option, param) =
                if command == "payments" { ("--customer", "customer_id") } else { ("--payment", "payment_id") };
            let query = match take_value(&mut args, option)? {
                Some(id) => vec![(param, uuid(&id, option.trim_start_matches('-'))?)],
                None => Vec::new(),
            };
            let [] = positionals(args, &command)?;
            Call {
                method: Method::GET,
                path: vec!["v1".into(), command],
                query,
                body: None,
                tenant_key: true,
                idempotency_key: None,
            }
        }
        _ => {
            let rest = args.iter().map(|a| format!(" {a}")).collect::<String>();
            return Err(Failure::Usage(format!("unknown command: {command}{rest}")));
        }
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

/// Removes the flag `name` from `args`; true when it was there.
fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    let at = args.iter().position(|a| a == name);
    at.map(|i| args.remove(i)).is_some()
}

/// `--idempotency-key KEY` when given (1..[`MAX_KEY_LEN`] visible ASCII characters,
/// as the API accepts), else a new random (UUID v4) key.
fn idempotency_key(args: &mut Vec<String>) -> Result<Option<String>, Failure> {
    match take_value(args, "--idempotency-key")? {
        Some(k) if k.is_empty() || k.len() > MAX_KEY_LEN || !k.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(Failure::Usage(format!("--idempotency-key {k:?}: use 1..{MAX_KEY_LEN} visible ASCII characters")))
        }
        Some(k) => Ok(Some(k)),
        None => Ok(Some(Uuid::new_v4().to_string())),
    }
}

/// The `N` positional arguments left once the command's options are taken; an
/// option it does not know, or a missing or extra word, is a usage error.
fn positionals<const N: usize>(args: Vec<String>, command: &str) -> Result<[String; N], Failure> {
    if let Some(option) = args.iter().find(|a| a.starts_with("--")) {
        return Err(Failure::Usage(format!("{command}: unknown option {option}")));
    }
    let found = args.len();
    args.try_into()
        .map_err(|_| Failure::Usage(format!("{command}: expected {N} argument(s) after the command, got {found}")))
}

/// `text` when it is a UUID (in its hyphenated form), else a usage error naming `what`.
fn uuid(text: &str, what: &str) -> Result<String, Failure> {
    Uuid::parse_str(text)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Failure::Usage(format!("{what} {text:?} is not a UUID")))
}

/// The call's URL under `api`: path segments and query percent-encoded.
fn url_of(api: &str, call: &Call) -> Result<Url, Failure> {
    let bad = |why: String| Failure::Usage(format!("--api {api:?}: {why}"));
    let mut url = Url::parse(api).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("not an http(s) URL".into()));
    }
    url.path_segments_mut().map_err(|()| bad("not a base URL".into()))?.pop_if_empty().extend(&call.path);
    if !call.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&call.query);
    }
    Ok(url)
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

async fn send(url: Url, token: &str, call: Call) -> Result<String, Failure> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let mut request = client.request(call.method, url.clone()).bearer_auth(token);
    if let Some(key) = &call.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    // The request may have been done even so (a timeout): say how to retry it safely.
    let unreachable = |e: reqwest::Error| {
        let retry = call.idempotency_key.as_ref().map(|k| format!("\nretry with --idempotency-key {k}"));
        Failure::Unreachable(format!("{url}: {e}{}", retry.unwrap_or_default()))
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(Failure::Refused(status, text));
    }
    // Pretty-printed when it is JSON (it always is), as received otherwise.
    Ok(serde_json::from_str::<Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text))
}
