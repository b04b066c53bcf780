//! CloudPayments adapter: notification authentication and widget parameters.
//!
//! Notifications are signed with `Content-HMAC` / `X-Content-HMAC`: base64 of
//! HMAC-SHA256 over the raw request body with the tenant's API secret. We verify
//! the raw bytes before parsing anything, accept either header, compare in constant
//! time, and refuse when the header or the secret is missing.

pub mod api;
pub mod wire;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::signing::verify_hmac_sha256;

/// Production API base; a tenant's `api_url` overrides it.
pub const DEFAULT_API_URL: &str = "https://api.cloudpayments.ru/";

/// True when one of the signature headers is a valid HMAC of `raw_body`.
pub fn verify_notification(api_secret: &str, raw_body: &[u8], signatures: &[Option<&str>]) -> bool {
    if api_secret.is_empty() {
        return false;
    }
    signatures.iter().flatten().any(|sig| {
        STANDARD.decode(sig.trim()).is_ok_and(|tag| verify_hmac_sha256(api_secret.as_bytes(), raw_body, &tag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        b"TransactionId=1001&Amount=1390.00&Currency=RUB&InvoiceId=inv-1&Description=%D0%A2%D0%B0%D1%80%D0%B8%D1%84+PRO";
    // python3: base64(hmac.new(b'secret-123', BODY, sha256).digest())
    const SIG: &str = "OBf9jSw7889/gR3M3L2TOSq3Iw/9QajbbvUKMJFBF/I=";

    #[test]
    fn accepts_either_header_and_fails_closed() {
        assert!(verify_notification("secret-123", BODY, &[Some(SIG), None]));
        assert!(verify_notification("secret-123", BODY, &[None, Some(SIG)]));
        assert!(verify_notification("secret-123", BODY, &[Some("garbage"), Some(SIG)]));
        assert!(!verify_notification("secret-124", BODY, &[Some(SIG), None]));
        assert!(!verify_notification("secret-123", b"TransactionId=1001&Amount=1.00", &[Some(SIG), None]));
        assert!(!verify_notification("secret-123", BODY, &[None, None]));
        assert!(!verify_notification("", BODY, &[Some(SIG)]));
        assert!(!verify_notification("secret-123", BODY, &[Some("")]));
    }
}
