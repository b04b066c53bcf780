//! `bench-notifications <api secret> <first transaction id>`: for each purchase's
//! widget parameters read from stdin (one `payment.confirmation` JSON object per
//! line) writes one signed CloudPayments Pay notification as the simulator sends
//! it after a successful widget payment (form-encoded fields of
//! `cloudpayments::base_fields` and `push_outcome`: `Status=Completed`), as one line
//! `<body>\t<Content-HMAC>` — the input of the webhook benchmark's wrk script
//! (`bench/all.sh`). The form body holds no tab or newline.

use std::io::{BufRead, Write};

use base64::Engine as _;
use billing_tests::cloudpayments::{CARD_OK, Format, WidgetParams, base_fields, encode, hmac_sha256, push_outcome};
use rust_decimal::Decimal;

#[allow(clippy::print_stderr)] // usage errors go to the terminal
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(secret), Some(first)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-notifications <api secret> <first transaction id> < confirmations.jsonl");
        std::process::exit(2);
    };
    let mut tx_id: i64 = first.parse()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let params: WidgetParams = serde_json::from_str(&line)?;
        let amount: Decimal = params.amount.parse()?;
        let mut fields = base_fields(tx_id, &params, amount, CARD_OK);
        push_outcome(&mut fields, None);
        let (body, _) = encode(Format::Form, &fields)?;
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), &body));
        out.write_all(&body)?;
        writeln!(out, "\t{signature}")?;
        tx_id += 1;
    }
    out.flush()?;
    Ok(())
}
