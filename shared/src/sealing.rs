//! Encryption at rest of the secrets a tenant's row holds: webhook signing secrets,
//! the payment gateway's API secret and the fiscal provider's password.
//!
//! AES-256-GCM (`ring`) under a master key from `BILLING_SECRETS_KEY` (32 bytes,
//! base64). A sealed value is text: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖
//! tag)>`, where the key id is the first 8 hex digits of the key's SHA-256 (so a
//! value names the key that opens it without revealing it) and the nonce is 12
//! random bytes. The associated data binds each value to its tenant and field
//! (`<tenant id>/<field>`): a value copied to another row or field does not open.
//!
//! Rotation: `BILLING_SECRETS_KEY_PREVIOUS` is a second key accepted for opening
//! only. Start every process with the new key as current and the old one as
//! previous, run `billing-api migrate` (it re-seals every tenant under the current
//! key: [`crate::services::tenant_secrets::reseal_all`]), then drop the previous
//! key. Serving processes never rewrite secrets; at start-up they only check that
//! their keys open every tenant's.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::signing::{random_bytes, sha256};

/// The version prefix of a sealed value.
const PREFIX: &str = "v1";

/// Why a key or a sealed value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("{0} must be 32 bytes in base64 (make one with `openssl rand -base64 32`)")]
    BadKey(&'static str),
    #[error("the value is not sealed (no `v<N>.` prefix)")]
    NotSealed,
    #[error("the value is sealed in format {0}, which this binary does not know (a newer release sealed it)")]
    UnknownVersion(String),
    #[error("the value is sealed under key {0}, which is neither BILLING_SECRETS_KEY nor BILLING_SECRETS_KEY_PREVIOUS")]
    UnknownKey(String),
    #[error("the sealed value does not open (tampered, truncated or moved to another row)")]
    DoesNotOpen,
    #[error("no secrets key installed: set BILLING_SECRETS_KEY")]
    NotInstalled,
    #[error("the system random source failed")]
    Random,
}

/// One AES-256 key and its public id.
struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn from_base64(name: &'static str, text: &str) -> Result<Key, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey(name))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey(name))?;
        Ok(Key { id: hex::encode(&sha256(&bytes)[..4]), key: LessSafeKey::new(unbound) })
    }
}

/// The current key (seals and opens) and, during a rotation, the previous one
/// (opens only).
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// Keys from their base64 text (`BILLING_SECRETS_KEY`, `BILLING_SECRETS_KEY_PREVIOUS`).
    ///
    /// Errors: [`SealError::BadKey`] when either is not 32 bytes of base64.
    pub fn from_base64(current: &str, previous: Option<&str>) -> Result<Keyring, SealError> {
        Ok(Keyring {
            current: Key::from_base64("BILLING_SECRETS_KEY", current)?,
            previous: previous.map(|p| Key::from_base64("BILLING_SECRETS_KEY_PREVIOUS", p)).transpose()?,
        })
    }

    /// The current key's id (first 8 hex digits of its SHA-256).
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// `plain` sealed under the current key, bound to `context` (`<tenant>/<field>`).
    pub fn seal(&self, context: &str, plain: &str) -> Result<String, SealError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>().map_err(|_| SealError::Random)?;
        let mut buf = plain.as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}.{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plain text of a value sealed under either key for `context`.
    ///
    /// Errors: [`SealError::NotSealed`] (no `v<N>.` prefix: plain text),
    /// [`SealError::UnknownVersion`] (`v<N>.` other than `v1.`),
    /// [`SealError::UnknownKey`], [`SealError::DoesNotOpen`].
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SealError> {
        match version_of(sealed) {
            None => return Err(SealError::NotSealed),
            Some(PREFIX) => {}
            Some(other) => return Err(SealError::UnknownVersion(other.to_owned())),
        }
        let mut parts = sealed.splitn(3, '.').skip(1);
        let (Some(id), Some(body)) = (parts.next(), parts.next()) else { return Err(SealError::DoesNotOpen) };
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::DoesNotOpen)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::DoesNotOpen);
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::DoesNotOpen)?;
        let mut buf = rest.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::DoesNotOpen)
    }

    /// True when `sealed` is a sealed value under the current key (else it needs
    /// re-sealing: plain text from before sealing, or the previous key).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|r| r.split_once('.').is_some_and(|(id, _)| id == self.current.id))
    }
}

/// The format version a value names (`v<digits>` before the first dot), or `None`
/// for plain text.
fn version_of(value: &str) -> Option<&str> {
    let (version, _) = value.split_once('.')?;
    let digits = version.strip_prefix('v')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(version)
}

static KEYRING: OnceLock<Arc<Keyring>> = OnceLock::new();

/// Installs the process's keyring (once, at start-up; a second call is ignored).
pub fn install(keyring: Arc<Keyring>) {
    let _ = KEYRING.set(keyring);
}

/// The installed keyring.
///
/// Errors: [`SealError::NotInstalled`] before [`install`].
pub fn keyring() -> Result<&'static Keyring, SealError> {
    KEYRING.get().map(|k| &**k).ok_or(SealError::NotInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    #[test]
    fn seals_and_opens_bound_to_its_context() {
        let ring = Keyring::from_base64(K1, None).unwrap();
        let sealed = ring.seal("t1/webhook_secret", "whsec_abc").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", ring.current_id())), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(ring.open("t1/webhook_secret", &sealed).unwrap(), "whsec_abc");
        assert_eq!(ring.open("t2/webhook_secret", &sealed), Err(SealError::DoesNotOpen));
        assert_ne!(ring.seal("t1/webhook_secret", "whsec_abc").unwrap(), sealed, "a fresh nonce each time");
        assert!(ring.is_current(&sealed));
    }

    #[test]
    fn refuses_tampered_plain_and_foreign_values() {
        let ring = Keyring::from_base64(K1, None).unwrap();
        let sealed = ring.seal("c", "secret").unwrap();
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(ring.open("c", std::str::from_utf8(&tampered).unwrap()), Err(SealError::DoesNotOpen));
        assert_eq!(ring.open("c", "secret"), Err(SealError::NotSealed));
        assert_eq!(ring.open("c", "v.x.y"), Err(SealError::NotSealed));
        // A later format is not mistaken for plain text (nor sealed again as such).
        assert_eq!(ring.open("c", "v2.abcd.efgh"), Err(SealError::UnknownVersion("v2".into())));
        assert_eq!(ring.open("c", "v1.only-two"), Err(SealError::DoesNotOpen));
        assert!(!ring.is_current("secret"));
        assert_eq!(ring.open("c", &sealed[..sealed.len() - 30]), Err(SealError::DoesNotOpen));
        let other = Keyring::from_base64(K2, None).unwrap();
        assert!(matches!(other.open("c", &sealed), Err(SealError::UnknownKey(_))));
    }

    #[test]
    fn previous_key_opens_but_does_not_seal() {
        let old = Keyring::from_base64(K1, None).unwrap();
        let sealed = old.seal("c", "secret").unwrap();
        let rotated = Keyring::from_base64(K2, Some(K1)).unwrap();
        assert_eq!(rotated.open("c", &sealed).unwrap(), "secret");
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.is_current(&rotated.seal("c", "secret").unwrap()));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(Keyring::from_base64("c2hvcnQ=", None).unwrap_err(), SealError::BadKey("BILLING_SECRETS_KEY"));
        assert_eq!(
            Keyring::from_base64(K1, Some("not base64!")).unwrap_err(),
            SealError::BadKey("BILLING_SECRETS_KEY_PREVIOUS")
        );
        assert!(!format!("{:?}", Keyring::from_base64(K1, None).unwrap()).contains(K1));
    }
}
