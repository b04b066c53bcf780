//! The ATOL Online v5 adapter of the fiscal registrar port (`billing_shared::fiscal`)
//! against the ATOL simulator directly: registration, reports, the token cache,
//! idempotency by `external_id`, and how refusals and unknown outcomes come back
//! through the port. No database.

use std::time::{Duration, Instant};

use billing_shared::domain::receipt::{Client, Company, Item, Payment, ReceiptDocument, Vat};
use billing_shared::domain::secret::Secret;
use billing_shared::domain::states::ReceiptKind;
use billing_shared::domain::tenant::{FiscalProvider, FiscalSettings, SettlementSign, TaxationSystem, VatType};
use billing_shared::fiscal::{FiscalError, FiscalRegistrar, Registered, Registrars, RegistrationRequest, ReportState};
use billing_tests::atol::{AtolScript, AtolSim};
use billing_tests::webhook_sink::WebhookSink;
use rust_decimal::Decimal;

const GROUP: &str = "seller-group-1";

fn settings(sim: &AtolSim, password: &str) -> FiscalSettings {
    FiscalSettings {
        inn: "7700000000".into(),
        sno: TaxationSystem::UsnIncome,
        vat: VatType::None,
        settlement_sign: SettlementSign::FullPrepayment,
        payment_object: 4,
        payment_address: "https://seller.ru".into(),
        email: "billing@seller.ru".into(),
        provider: FiscalProvider {
            login: "seller-login".into(),
            password: Secret::new(password),
            group_code: GROUP.into(),
            api_url: Some(sim.base_url.clone()),
        },
    }
}

fn setup_with(timeout: Duration, password: &str) -> (AtolSim, Box<dyn FiscalRegistrar>) {
    billing_shared::telemetry::install_crypto_provider();
    let sim = AtolSim::start("127.0.0.1:0").expect("start ATOL simulator");
    sim.add_account("seller-login", "seller-pass", GROUP);
    let registrar = Registrars::new(timeout).expect("client").for_settings(&settings(&sim, password));
    (sim, registrar)
}

fn setup() -> (AtolSim, Box<dyn FiscalRegistrar>) {
    setup_with(Duration::from_secs(5), "seller-pass")
}

/// A registration attempt of an income (sell) or income refund receipt.
struct Doc {
    external_id: String,
    callback_url: Option<String>,
    kind: ReceiptKind,
    document: ReceiptDocument,
}

impl Doc {
    fn request(&self) -> RegistrationRequest<'_> {
        RegistrationRequest {
            external_id: &self.external_id,
            at: chrono::Utc::now(),
            callback_url: self.callback_url.as_deref(),
            kind: self.kind,
            document: &self.document,
        }
    }
}

fn document(external_id: &str, amount: &str) -> Doc {
    let amount: Decimal = amount.parse().unwrap();
    Doc {
        external_id: external_id.into(),
        callback_url: None,
        kind: ReceiptKind::Income,
        document: ReceiptDocument {
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

async fn register(registrar: &dyn FiscalRegistrar, doc: &Doc) -> String {
    match registrar.register(&doc.request()).await {
        Ok(Registered::New { provider_id }) => provider_id,
        other => panic!("expected a new document, got {other:?}"),
    }
}

/// Polls the report until it is no longer pending.
async fn settled(registrar: &dyn FiscalRegistrar, uuid: &str) -> ReportState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = registrar.report(uuid).await.unwrap();
        if report != ReportState::Pending || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_sell_is_registered_and_its_report_turns_done_with_the_fiscal_attributes() {
    let (sim, registrar) = setup();
    let sink = WebhookSink::start();
    let mut doc = document("inv-1-sell", "990.00");
    doc.callback_url = Some(sink.url.clone());
    let uuid = register(&*registrar, &doc).await;

    let report = settled(&*registrar, &uuid).await;
    let ReportState::Registered(p) = &report else { panic!("not done: {report:?}") };
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
    let (sim, registrar) = setup();
    let uuid = register(&*registrar, &document("inv-2-sell", "1390.00")).await;
    registrar.report(&uuid).await.unwrap();
    assert_eq!(sim.token_requests(), 1);

    sim.expire_tokens();
    let report = settled(&*registrar, &uuid).await;
    assert!(matches!(report, ReportState::Registered(_)), "{report:?}");
    assert_eq!(sim.token_requests(), 2, "one new token after error 11, then cached again");
    let mut refund = document("inv-2-refund", "1390.00");
    refund.kind = ReceiptKind::IncomeRefund;
    let refund = registrar.register(&refund.request()).await.unwrap();
    assert!(matches!(refund, Registered::New { .. }));
    assert_eq!(sim.token_requests(), 2);
    assert_eq!(sim.documents()[1].op, "sell_refund");
}

#[tokio::test]
async fn wrong_credentials_are_a_configuration_problem() {
    let (sim, registrar) = setup_with(Duration::from_secs(5), "wrong");
    let err = registrar.register(&document("inv-3-sell", "10.00").request()).await.unwrap_err();
    assert!(matches!(err, FiscalError::Configuration(_)), "{err:?}");
    assert!(sim.documents().is_empty());
}

#[tokio::test]
async fn the_same_external_id_again_is_already_known_with_the_first_uuid() {
    let (sim, registrar) = setup();
    let doc = document("inv-4-sell", "990.00");
    let first = register(&*registrar, &doc).await;
    let again = registrar.register(&doc.request()).await.unwrap();
    assert_eq!(again, Registered::AlreadyExists { provider_id: Some(first.clone()) });
    assert_eq!(sim.documents().len(), 1, "no second receipt");
    assert_eq!(sim.operation_requests(), 2);
    assert!(matches!(settled(&*registrar, &first).await, ReportState::Registered(_)));
    assert_eq!(sim.done_for_prefix("inv-4-"), 1);
}

#[tokio::test]
async fn refusals_and_unknown_outcomes_come_back_apart() {
    let (sim, registrar) = setup();
    sim.script(&[AtolScript::Reject32, AtolScript::ServerError, AtolScript::FailTimeout]);

    let err = registrar.register(&document("inv-5-sell", "990.00").request()).await.unwrap_err();
    assert!(matches!(&err, FiscalError::DocumentRefused(f) if f.code == 32), "{err:?}");

    let err = registrar.register(&document("inv-6-sell", "990.00").request()).await.unwrap_err();
    assert!(matches!(err, FiscalError::Retryable(_)), "{err:?}");
    assert!(sim.documents().iter().all(|d| d.external_id != "inv-6-sell"), "a 500 records nothing");

    let uuid = register(&*registrar, &document("inv-7-sell", "990.00")).await;
    match settled(&*registrar, &uuid).await {
        ReportState::Failed { failure, document_refused } => {
            assert_eq!((failure.code, failure.kind.as_str(), document_refused), (1, "timeout", false))
        }
        other => panic!("expected a queue timeout, got {other:?}"),
    }
    // After a fail the external_id may be sent again: a new document.
    let retry = register(&*registrar, &document("inv-7-sell", "990.00")).await;
    assert_ne!(retry, uuid);
    assert!(matches!(settled(&*registrar, &retry).await, ReportState::Registered(_)));
}

#[tokio::test]
async fn a_total_that_is_not_the_sum_of_the_items_is_refused_by_validation() {
    let (sim, registrar) = setup();
    let mut doc = document("inv-8-sell", "990.00");
    doc.document.total = Decimal::new(99001, 2);
    let err = registrar.register(&doc.request()).await.unwrap_err();
    let FiscalError::DocumentRefused(f) = err else { panic!("{err:?}") };
    assert_eq!(f.code, 32);
    assert!(f.text.contains("total"), "{}", f.text);
    let docs = sim.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].status, "fail");
    let report = registrar.report(&docs[0].uuid).await.unwrap();
    assert!(matches!(report, ReportState::Failed { failure, document_refused: true } if failure.code == 32));
}

#[tokio::test]
async fn a_slow_answer_is_unknown_and_the_resend_finds_the_recorded_document() {
    let (sim, registrar) = setup_with(Duration::from_millis(300), "seller-pass");
    sim.set_slow_ms(1500);
    sim.script(&[AtolScript::Slow]);
    let doc = document("inv-9-sell", "990.00");
    let err = registrar.register(&doc.request()).await.unwrap_err();
    assert!(matches!(err, FiscalError::Retryable(_)), "{err:?}");
    let recorded = sim.documents()[0].uuid.clone();
    let again = registrar.register(&doc.request()).await.unwrap();
    assert_eq!(again, Registered::AlreadyExists { provider_id: Some(recorded.clone()) });
    assert!(matches!(settled(&*registrar, &recorded).await, ReportState::Registered(_)));
}

#[tokio::test]
async fn a_held_document_waits_until_released() {
    let (sim, registrar) = setup();
    sim.script(&[AtolScript::NeverProcess]);
    let uuid = register(&*registrar, &document("inv-10-sell", "990.00")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registrar.report(&uuid).await.unwrap(), ReportState::Pending);
    sim.release_all();
    assert!(matches!(settled(&*registrar, &uuid).await, ReportState::Registered(_)));
    let err = registrar.report("00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(matches!(err, FiscalError::DocumentRefused(f) if f.code == 30), "unknown uuid");
}
