//! The ATOL Online v5 client (`billing_shared::gateways::atol`) against the ATOL
//! simulator directly: registration, reports, the token cache, idempotency by
//! `external_id`, and how refusals and unknown outcomes come back. No database.

use std::time::{Duration, Instant};

use billing_shared::gateways::atol::{
    Accepted, AtolAccount, AtolApi, AtolError, Client, Company, Document, Item, Operation, Payment, Receipt, Report,
    ReportStatus, Service, Vat,
};
use billing_tests::atol::{AtolScript, AtolSim};
use billing_tests::webhook_sink::WebhookSink;
use rust_decimal::Decimal;

const GROUP: &str = "seller-group-1";

fn setup_with(timeout: Duration) -> (AtolSim, AtolApi, AtolAccount) {
    billing_shared::telemetry::install_crypto_provider();
    let sim = AtolSim::start("127.0.0.1:0").expect("start ATOL simulator");
    sim.add_account("seller-login", "seller-pass", GROUP);
    let api = AtolApi::new(timeout).expect("client");
    let account = AtolAccount {
        login: "seller-login".into(),
        password: "seller-pass".into(),
        group_code: GROUP.into(),
        base_url: sim.base_url.clone(),
    };
    (sim, api, account)
}

fn setup() -> (AtolSim, AtolApi, AtolAccount) {
    setup_with(Duration::from_secs(5))
}

fn document(external_id: &str, amount: &str) -> Document {
    let amount: Decimal = amount.parse().unwrap();
    Document {
        external_id: external_id.into(),
        timestamp: "05.03.2026 12:00:00".into(),
        service: None,
        receipt: Receipt {
            client: Client { email: Some("user-1@example.ru".into()), phone: None },
            company: Company {
                email: "billing@seller.ru".into(),
                sno: "usn_income".into(),
                inn: "7700000000".into(),
                payment_address: "https://seller.ru".into(),
            },
            items: vec![Item {
                name: "Подписка Pro, 1 мес".into(),
                price: amount,
                quantity: Decimal::ONE,
                measure: 0,
                sum: amount,
                payment_method: "full_prepayment".into(),
                payment_object: 4,
                vat: Vat { kind: "none".into() },
            }],
            payments: vec![Payment { kind: 1, sum: amount }],
            total: amount,
        },
    }
}

async fn register(api: &AtolApi, account: &AtolAccount, doc: &Document) -> String {
    match api.register(account, Operation::Sell, doc).await {
        Ok(Accepted::New { uuid }) => uuid,
        other => panic!("expected a new document, got {other:?}"),
    }
}

/// Polls the report until it leaves `wait`.
async fn settled(api: &AtolApi, account: &AtolAccount, uuid: &str) -> Report {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = api.report(account, uuid).await.unwrap();
        if report.status != ReportStatus::Wait || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_sell_is_registered_and_its_report_turns_done_with_the_fiscal_attributes() {
    let (sim, api, account) = setup();
    let sink = WebhookSink::start();
    let mut doc = document("inv-1-sell", "990.00");
    doc.service = Some(Service { callback_url: sink.url.clone() });
    let uuid = register(&api, &account, &doc).await;

    let report = settled(&api, &account, &uuid).await;
    assert_eq!(report.uuid, uuid);
    let ReportStatus::Done(p) = &report.status else { panic!("not done: {report:?}") };
    assert_eq!(p.total, Some(Decimal::new(99000, 2)));
    assert_eq!(p.fns_site.as_deref(), Some("www.nalog.gov.ru"));
    assert_eq!(p.fn_number.as_deref(), Some("9999078900004312"));
    assert_eq!(p.ecr_registration_number.as_deref(), Some("0000000001002292"));
    assert_eq!(p.ofd_inn.as_deref(), Some("7704211201"));
    assert!(p.fiscal_document_attribute.is_some_and(|fpd| (1_000_000_000..10_000_000_000).contains(&fpd)), "{p:?}");
    assert!(p.fiscal_document_number.is_some() && p.fiscal_receipt_number.is_some() && p.shift_number.is_some());
    assert!(p.receipt_datetime.is_some() && p.ofd_receipt_url.is_some());

    let docs = sim.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!((docs[0].op.as_str(), docs[0].external_id.as_str()), ("sell", "inv-1-sell"));
    assert_eq!(sim.done_for_prefix("inv-1-"), 1);
    assert_eq!(sim.token_requests(), 1, "one token for the registration and every report");

    // The callback carries the report; a provider retry is a duplicate of it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.callbacks().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.callbacks(), vec![(sink.url.clone(), 200)]);
    assert_eq!(sim.resend_callback(&uuid).await.unwrap(), 200);
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0], delivered[1]);
    assert_eq!(delivered[0]["uuid"], uuid.as_str());
    assert_eq!(delivered[0]["status"], "done");
    assert_eq!(delivered[0]["group_code"], GROUP);
}

#[tokio::test]
async fn the_token_is_fetched_once_and_refreshed_once_after_it_expires() {
    let (sim, api, account) = setup();
    let uuid = register(&api, &account, &document("inv-2-sell", "1390.00")).await;
    api.report(&account, &uuid).await.unwrap();
    assert_eq!(sim.token_requests(), 1);

    sim.expire_tokens();
    let report = settled(&api, &account, &uuid).await;
    assert!(matches!(report.status, ReportStatus::Done(_)), "{report:?}");
    assert_eq!(sim.token_requests(), 2, "one new token after error 11, then cached again");
    let refund = api.register(&account, Operation::SellRefund, &document("inv-2-refund", "1390.00")).await.unwrap();
    assert!(matches!(refund, Accepted::New { .. }));
    assert_eq!(sim.token_requests(), 2);
    assert_eq!(sim.documents()[1].op, "sell_refund");
}

#[tokio::test]
async fn wrong_credentials_are_a_configuration_problem() {
    let (sim, api, mut account) = setup();
    account.password = "wrong".into();
    let err = api.register(&account, Operation::Sell, &document("inv-3-sell", "10.00")).await.unwrap_err();
    assert!(matches!(err, AtolError::Configuration(_)), "{err:?}");
    assert!(sim.documents().is_empty());
}

#[tokio::test]
async fn the_same_external_id_again_is_already_known_with_the_first_uuid() {
    let (sim, api, account) = setup();
    let doc = document("inv-4-sell", "990.00");
    let first = register(&api, &account, &doc).await;
    let again = api.register(&account, Operation::Sell, &doc).await.unwrap();
    assert_eq!(again, Accepted::AlreadyExists { uuid: Some(first.clone()) });
    assert_eq!(sim.documents().len(), 1, "no second receipt");
    assert_eq!(sim.operation_requests(), 2);
    assert!(matches!(settled(&api, &account, &first).await.status, ReportStatus::Done(_)));
    assert_eq!(sim.done_for_prefix("inv-4-"), 1);
}

#[tokio::test]
async fn refusals_and_unknown_outcomes_come_back_apart() {
    let (sim, api, account) = setup();
    sim.script(&[AtolScript::Reject32, AtolScript::ServerError, AtolScript::FailTimeout]);

    let err = api.register(&account, Operation::Sell, &document("inv-5-sell", "990.00")).await.unwrap_err();
    assert!(matches!(&err, AtolError::Rejected(f) if f.code == 32), "{err:?}");

    let err = api.register(&account, Operation::Sell, &document("inv-6-sell", "990.00")).await.unwrap_err();
    assert!(matches!(err, AtolError::Unknown(_)), "{err:?}");
    assert!(sim.documents().iter().all(|d| d.external_id != "inv-6-sell"), "a 500 records nothing");

    let uuid = register(&api, &account, &document("inv-7-sell", "990.00")).await;
    match settled(&api, &account, &uuid).await.status {
        ReportStatus::Fail(f) => assert_eq!((f.code, f.kind.as_str()), (1, "timeout")),
        other => panic!("expected a queue timeout, got {other:?}"),
    }
    // After a fail the external_id may be sent again: a new document.
    let retry = register(&api, &account, &document("inv-7-sell", "990.00")).await;
    assert_ne!(retry, uuid);
    assert!(matches!(settled(&api, &account, &retry).await.status, ReportStatus::Done(_)));
}

#[tokio::test]
async fn a_total_that_is_not_the_sum_of_the_items_is_refused_by_validation() {
    let (sim, api, account) = setup();
    let mut doc = document("inv-8-sell", "990.00");
    doc.receipt.total = Decimal::new(99001, 2);
    let err = api.register(&account, Operation::Sell, &doc).await.unwrap_err();
    let AtolError::Rejected(f) = err else { panic!("{err:?}") };
    assert_eq!(f.code, 32);
    assert!(f.text.contains("total"), "{}", f.text);
    let docs = sim.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].status, "fail");
    let report = api.report(&account, &docs[0].uuid).await.unwrap();
    assert!(matches!(report.status, ReportStatus::Fail(f) if f.code == 32));
}

#[tokio::test]
async fn a_slow_answer_is_unknown_and_the_resend_finds_the_recorded_document() {
    let (sim, api, account) = setup_with(Duration::from_millis(300));
    sim.set_slow_ms(1500);
    sim.script(&[AtolScript::Slow]);
    let doc = document("inv-9-sell", "990.00");
    let err = api.register(&account, Operation::Sell, &doc).await.unwrap_err();
    assert!(matches!(err, AtolError::Unknown(_)), "{err:?}");
    let recorded = sim.documents()[0].uuid.clone();
    let again = api.register(&account, Operation::Sell, &doc).await.unwrap();
    assert_eq!(again, Accepted::AlreadyExists { uuid: Some(recorded.clone()) });
    assert!(matches!(settled(&api, &account, &recorded).await.status, ReportStatus::Done(_)));
}

#[tokio::test]
async fn a_held_document_waits_until_released() {
    let (sim, api, account) = setup();
    sim.script(&[AtolScript::NeverProcess]);
    let uuid = register(&api, &account, &document("inv-10-sell", "990.00")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(api.report(&account, &uuid).await.unwrap().status, ReportStatus::Wait);
    sim.release_all();
    assert!(matches!(settled(&api, &account, &uuid).await.status, ReportStatus::Done(_)));
    let err = api.report(&account, "00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(matches!(err, AtolError::Rejected(f) if f.code == 30), "unknown uuid");
}
