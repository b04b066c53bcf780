//! HMAC-SHA256 and SHA-256 helpers: one place for every signature the service
//! makes or checks (CloudPayments notifications, outgoing webhooks, API key hashes).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Whether a secret someone gave equals the expected one, compared by SHA-256
/// digest so the time taken does not depend on where they differ (operator token,
/// console sign-in).
pub fn same_secret(given: &str, expected: &str) -> bool {
    sha256(given.as_bytes()) == sha256(expected.as_bytes())
}

/// Constant-time check of `tag` against HMAC-SHA256(key, message).
pub fn verify_hmac_sha256(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // python3: hmac.new(b'whsec_test', b'1700000000.{"id":"x"}', hashlib.sha256).hexdigest()
        let tag = hmac_sha256(b"whsec_test", br#"1700000000.{"id":"x"}"#);
        assert_eq!(hex::encode(&tag), "80e8d098018f757aa814ab1abb924f35d304affa1d93d29611a54696207eb7c3");
        assert!(verify_hmac_sha256(b"whsec_test", br#"1700000000.{"id":"x"}"#, &tag));
        assert!(!verify_hmac_sha256(b"whsec_other", br#"1700000000.{"id":"x"}"#, &tag));
        assert!(!verify_hmac_sha256(b"whsec_test", br#"1700000000.{"id":"y"}"#, &tag));
    }
}
