//! The local demo: seeds the demo tenants (built from the five offers) into a
//! running billing API through its operator and tenant endpoints, registers their
//! CloudPayments sites or YooKassa shops and ATOL Online accounts with the
//! simulators, and prints how to try a purchase.
//!
//! Keys are shown only once by the API, so they are kept in a state file; on a
//! later run the stored keys are reused when they still authenticate.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::atol::AtolSim;
use crate::cloudpayments::{CloudPaymentsSim, Site};
use crate::yookassa::{Shop, YooKassaSim};

/// The simulators the demo tenants are registered with.
pub struct Simulators<'a> {
    pub cloudpayments: &'a CloudPaymentsSim,
    pub yookassa: &'a YooKassaSim,
    pub atol: &'a AtolSim,
}

pub struct DemoConfig<'a> {
    pub api: &'a str,
    pub admin_token: &'a str,
    pub tenants_file: &'a Path,
    pub state_file: &'a Path,
}

async fn wait_for_api(http: &reqwest::Client, api: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if http.get(format!("{api}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("the billing API at {api} did not come up")
}

/// Seeds (or re-attaches) every demo tenant; returns the state (keys per tenant).
pub async fn seed(sims: &Simulators<'_>, cfg: &DemoConfig<'_>) -> anyhow::Result<Value> {
    let atol = sims.atol;
    let http = reqwest::Client::builder().no_proxy().build()?;
    wait_for_api(&http, cfg.api).await?;
    let tenants: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(cfg.tenants_file).context("reading demo tenants")?)?;
    let mut state: Value =
        std::fs::read_to_string(cfg.state_file).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(json!({}));
    for t in &tenants {
        let key = t["key"].as_str().context("tenant key")?;
        let stored = state.get(key).cloned();
        let alive = match stored.as_ref().and_then(|s| s["api_key"].as_str()) {
            Some(api_key) => {
                http.get(format!("{}/v1/plans", cfg.api)).bearer_auth(api_key).send().await?.status().is_success()
            }
            None => false,
        };
        let entry = if alive {
            stored.unwrap_or_default()
        } else {
            let mut body = t.clone();
            if let Some(obj) = body.as_object_mut() {
                for k in ["key", "plans", "sources"] {
                    obj.remove(k);
                }
            }
            body["gateway"]["api_url"] = match body["gateway"]["kind"].as_str() {
                Some("yookassa") => json!(sims.yookassa.api_url()),
                _ => json!(sims.cloudpayments.base_url),
            };
            if body["fiscal"].is_object() {
                body["fiscal"]["provider"]["api_url"] = json!(atol.base_url);
            }
            let res = http
                .post(format!("{}/v1/admin/tenants", cfg.api))
                .bearer_auth(cfg.admin_token)
                .json(&body)
                .send()
                .await?;
            let status = res.status();
            let created: Value = res.json().await?;
            anyhow::ensure!(status.as_u16() == 201, "creating demo tenant {key}: {created}");
            json!({"tenant_id": created["id"], "api_key": created["api_key"], "webhook_secret": created["webhook_secret"], "name": t["name"]})
        };
        let api_key = entry["api_key"].as_str().context("api_key")?.to_owned();
        for plan in t["plans"].as_array().into_iter().flatten() {
            let res = http.post(format!("{}/v1/plans", cfg.api)).bearer_auth(&api_key).json(plan).send().await?;
            anyhow::ensure!(
                matches!(res.status().as_u16(), 201 | 409),
                "creating plan {}: {}",
                plan["code"],
                res.text().await?
            );
        }
        let tenant_id = entry["tenant_id"].as_str().context("tenant_id")?;
        let secret = t["gateway"]["api_secret"].as_str().context("api_secret")?.to_owned();
        match t["gateway"]["kind"].as_str() {
            Some("yookassa") => sims.yookassa.register_shop(Shop {
                shop_id: t["gateway"]["shop_id"].as_str().context("shop_id")?.to_owned(),
                secret_key: secret,
                notification_url: format!("{}/v1/webhooks/yookassa/{tenant_id}", cfg.api),
            }),
            _ => sims.cloudpayments.register_site(Site {
                public_id: t["gateway"]["public_id"].as_str().context("public_id")?.to_owned(),
                api_secret: secret,
                notify_base: format!("{}/v1/webhooks/cloudpayments/{tenant_id}", cfg.api),
                format: Default::default(),
            }),
        }
        let provider = &t["fiscal"]["provider"];
        if let (Some(login), Some(password), Some(group)) =
            (provider["login"].as_str(), provider["password"].as_str(), provider["group_code"].as_str())
        {
            atol.add_account(login, password, group);
        }
        state[key] = entry;
    }
    if let Some(dir) = cfg.state_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(cfg.state_file, serde_json::to_string_pretty(&state)?)?;
    Ok(state)
}

/// The walkthrough printed once the demo is up.
pub fn walkthrough(api: &str, sim: &str, yk: &str, admin_token: &str, state: &Value) -> String {
    let key = |tenant: &str| state[tenant]["api_key"].as_str().unwrap_or("<key>").to_owned();
    let (wm, orbita, seller, alfa) = (key("whatsmonster"), key("orbita"), key("sellergpt"), key("alfacrm"));
    let smm = key("smm-gpt");
    format!(
        r#"
Billing demo is running. The walkthrough is bash (python3 parses JSON, iconv encodes the
bank statement); run the steps in one shell, in order: they share KEY, CUSTOMER, ...
  API        {api}   (docs: {api}/docs/)
  simulators {sim}   (CloudPayments), {yk}   (YooKassa v3), ATOL Online v5 on :8092
  RabbitMQ   http://127.0.0.1:15672  (guest / guest: queues billing.renewals, billing.refunds, billing.receipts, ...)
  worker     http://127.0.0.1:9090/metrics
  operator   Authorization: Bearer {admin_token}
  console    {api}/console/   (sign in with the operator token)
  tenant keys are in .run/demo-state.json

1) Buy WhatsMonster PRO (1390 RUB / 30 days, manual renewal) against the simulator:

  KEY={wm}
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"user-1","email":"user-1@example.ru"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"PRO\",\"pay_with\":\"card\"}}" > /tmp/purchase.json
  # pay in the simulated CloudPayments widget (signed Check + Pay notifications):
  python3 -c 'import json;print(json.dumps(json.load(open("/tmp/purchase.json"))["payment"]["confirmation"]))' \
      | curl -s {sim}/sim/widget/pay -H 'content-type: application/json' -d @-
  curl -s {api}/v1/customers/$CUSTOMER/entitlements -H "Authorization: Bearer $KEY"

  (add "card":"4012888888881881" to the JSON sent to /sim/widget/pay to have the payment
  declined with InsufficientFunds.)

   The 54-FZ receipt is registered with the ATOL simulator (fiscal attributes included),
   and within a day of payment an unused tariff is refunded through the simulator
   (WhatsMonster 7.12), followed by a refund receipt:

  PAYMENT=$(python3 -c 'import json;print(json.load(open("/tmp/purchase.json"))["payment"]["id"])')
  sleep 2   # the worker registers the receipt
  curl -s "{api}/v1/receipts?payment_id=$PAYMENT" -H "Authorization: Bearer $KEY"
  curl -s {api}/v1/refunds -H "Authorization: Bearer $KEY" -d "{{\"payment_id\":\"$PAYMENT\",\"reason\":\"unused\"}}"
  sleep 5   # the worker pays it back through the simulator
  curl -s "{api}/v1/refunds?payment_id=$PAYMENT" -H "Authorization: Bearer $KEY"    # succeeded

2) Watch an autopay renewal: buy Orbita START (monthly autopay) the same way, then
   move the shared test clock past the period end; the worker charges the saved card:

  KEY={orbita}
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"user-2","email":"user-2@example.ru"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"START\",\"pay_with\":\"card\"}}" > /tmp/purchase.json
  python3 -c 'import json;print(json.dumps(json.load(open("/tmp/purchase.json"))["payment"]["confirmation"]))' \
      | curl -s {sim}/sim/widget/pay -H 'content-type: application/json' -d @-
  curl -s {api}/v1/admin/clock -H "Authorization: Bearer {admin_token}" \
      -d "{{\"now\":\"$(date -u -d '+3 months +1 hour' +%Y-%m-%dT%H:%M:%SZ)\"}}"
  sleep 10  # the scheduler catches up period by period; the clock reports "settled": true when done
  curl -s "{api}/v1/payments?customer_id=$CUSTOMER" -H "Authorization: Bearer $KEY"   # purchase + 3 renewals

3) WhatsMonster's personal account (7.18) and cashback (7.25): top up 5000 RUB by card,
   buy VIP (3900, 5% cashback) from the balance, see the cashback, refund the VIP payment
   back onto the balance (its cashback is taken back):

  KEY={wm}
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"user-3","email":"user-3@example.ru"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  curl -s {api}/v1/customers/$CUSTOMER/top-ups -H "Authorization: Bearer $KEY" \
      -d '{{"amount":{{"value":"5000.00","currency":"RUB"}}}}' > /tmp/topup.json
  python3 -c 'import json;print(json.dumps(json.load(open("/tmp/topup.json"))["payment"]["confirmation"]))' \
      | curl -s {sim}/sim/widget/pay -H 'content-type: application/json' -d @-
  curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"VIP\",\"pay_with\":\"balance\"}}" > /tmp/vip.json
  curl -s {api}/v1/customers/$CUSTOMER/balance -H "Authorization: Bearer $KEY"   # 1100.00 prepaid + 195.00 cashback
  PAYMENT=$(python3 -c 'import json;print(json.load(open("/tmp/vip.json"))["payment"]["id"])')
  curl -s {api}/v1/refunds -H "Authorization: Bearer $KEY" -d "{{\"payment_id\":\"$PAYMENT\",\"reason\":\"unused\"}}"
  sleep 5   # the worker puts it back onto the balance
  curl -s {api}/v1/customers/$CUSTOMER/balance -H "Authorization: Bearer $KEY"   # 5000.00 prepaid again

4) SellerGPT: a partner's customer (3.2.2) pays by invoice (3.1.2), the payment is marked
   received, access starts, the act is issued; the partner's statement shows the commission:

  KEY={seller}
  curl -s {api}/v1/partners -H "Authorization: Bearer $KEY" -d '{{"code":"blogger","name":"Блогер"}}'
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"corp-1","email":"corp@example.ru","partner_code":"blogger","legal_entity":{{"name":"ООО \"Ромашка\"","inn":"7701234567"}}}}' \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  INVOICE=$(curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"BASIC\",\"pay_with\":\"invoice\"}}" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["payment"]["invoice_id"])')
  curl -s {api}/v1/invoices/$INVOICE/pdf -H "Authorization: Bearer $KEY" -o /tmp/invoice.pdf
  AMOUNT=$(curl -s {api}/v1/invoices/$INVOICE -H "Authorization: Bearer $KEY" | python3 -c 'import json,sys;print(json.load(sys.stdin)["total"]["value"])')
  NOW=$(curl -s {api}/v1/admin/clock -H "Authorization: Bearer {admin_token}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["now"])')
  curl -s {api}/v1/invoices/$INVOICE/mark-paid -H "Authorization: Bearer $KEY" \
      -d "{{\"amount\":{{\"value\":\"$AMOUNT\",\"currency\":\"RUB\"}},\"paid_at\":\"$NOW\",\"reference\":\"пп 1\"}}" > /tmp/paid.json
  ACT=$(python3 -c 'import json;print(json.load(open("/tmp/paid.json"))["invoice"]["act_id"])')
  curl -s {api}/v1/acts/$ACT/pdf -H "Authorization: Bearer $KEY" -o /tmp/act.pdf
  curl -s "{api}/v1/customers/$CUSTOMER/entitlements" -H "Authorization: Bearer $KEY"     # access: true
  curl -s "{api}/v1/partners/blogger/statement?month=${{NOW:0:7}}" -H "Authorization: Bearer $KEY"

5) Alfa CRM: a legal entity's invoice (5.3) paid by importing a bank statement (1C format):

  KEY={alfa}
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"school-1","email":"school@example.ru","legal_entity":{{"name":"ООО \"Школа\"","inn":"7702345678"}}}}' \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  INVOICE=$(curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"CLIENTS_100_M\",\"pay_with\":\"invoice\"}}" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["payment"]["invoice_id"])')
  read NUMBER AMOUNT < <(curl -s {api}/v1/invoices/$INVOICE -H "Authorization: Bearer $KEY" \
      | python3 -c 'import json,sys;i=json.load(sys.stdin);print(i["number"],i["total"]["value"])')
  TODAY=$(curl -s {api}/v1/admin/clock -H "Authorization: Bearer {admin_token}" \
      | python3 -c 'import json,sys;d=json.load(sys.stdin)["now"][:10].split("-");print(".".join(reversed(d)))')
  printf '1CClientBankExchange\nКодировка=Windows\nСекцияДокумент=Платежное поручение\nНомер=42\nДата=%s\nСумма=%s\nПлательщикИНН=7702345678\nПолучательИНН=5404029565\nНазначениеПлатежа=Оплата по счету %s\nКонецДокумента\nКонецФайла\n' \
      "$TODAY" "$AMOUNT" "$NUMBER" | iconv -f utf-8 -t cp1251 > /tmp/statement.txt
  curl -s {api}/v1/invoices/import -H "Authorization: Bearer $KEY" -H 'content-type: text/plain' --data-binary @/tmp/statement.txt
  curl -s {api}/v1/invoices/$INVOICE -H "Authorization: Bearer $KEY"   # paid, with its act

6) SMM-GPT takes cards through YooKassa (the simulator): buy START (490 RUB / month,
   autopay) in YooKassa's embedded checkout, see it renew by payment_method_id, and
   refund the renewal (unused, within 5 business days: SMM-GPT 3.6):

  KEY={smm}
  CUSTOMER=$(curl -s {api}/v1/customers -H "Authorization: Bearer $KEY" \
      -d '{{"external_id":"user-6","email":"user-6@example.ru"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  TOKEN=$(curl -s {api}/v1/subscriptions -H "Authorization: Bearer $KEY" \
      -d "{{\"customer_id\":\"$CUSTOMER\",\"plan\":\"START\",\"pay_with\":\"card\"}}" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["payment"]["confirmation"]["confirmation_token"])')
  # the customer pays in the simulated widget; YooKassa notifies, the service re-fetches the payment:
  curl -s {yk}/sim/yookassa/confirm -H 'content-type: application/json' -d "{{\"confirmation_token\":\"$TOKEN\"}}"
  curl -s {api}/v1/customers/$CUSTOMER/entitlements -H "Authorization: Bearer $KEY"   # access: true
  NOW=$(curl -s {api}/v1/admin/clock -H "Authorization: Bearer {admin_token}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["now"])')
  curl -s {api}/v1/admin/clock -H "Authorization: Bearer {admin_token}" \
      -d "{{\"now\":\"$(date -u -d "$NOW +1 month +1 hour" +%Y-%m-%dT%H:%M:%SZ)\"}}"
  sleep 5   # the worker renews by the saved payment_method_id
  RENEWAL=$(curl -s "{api}/v1/payments?customer_id=$CUSTOMER" -H "Authorization: Bearer $KEY" \
      | python3 -c 'import json,sys;print([p["id"] for p in json.load(sys.stdin)["data"] if p["kind"]=="renewal"][0])')
  curl -s {api}/v1/refunds -H "Authorization: Bearer $KEY" -d "{{\"payment_id\":\"$RENEWAL\",\"reason\":\"unused\"}}"
  sleep 5   # refunded through POST /v3/refunds, closed by the refund.succeeded notification
  curl -s "{api}/v1/refunds?payment_id=$RENEWAL" -H "Authorization: Bearer $KEY"     # succeeded
  curl -s {yk}/sim/yookassa/payments     # what YooKassa holds: the checkout, the autopayment
"#
    )
}
