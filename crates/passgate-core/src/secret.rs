//! The server secret (`PASSGATE_SECRET_KEY`) and what is derived from it.
//!
//! One secret of 32+ random bytes feeds HKDF-SHA256, which derives a separate
//! key per [`Purpose`], so a key used to seal the signing key can never be
//! confused with the one that hashes codes. Two operations use them:
//!
//! - **sealing** (AES-256-GCM, random 96-bit nonce, the purpose as
//!   associated data): signing keys and queued emails are stored sealed, so
//!   a copy of the database alone reveals neither;
//! - **keyed hashing** (HMAC-SHA256): fallback and OTP codes are stored as
//!   keyed hashes, which a database thief cannot enumerate offline.
//!
//! During a rotation (`PASSGATE_SECRET_KEY_PREVIOUS`), new values use the
//! current secret and old ones still open or verify under the previous one.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// What a derived key is for. Each has its own key; never reuse one for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SigningKey,
    Outbox,
    LoginCode,
    DevApiKey,
    OtpCode,
    /// A webhook endpoint's signing secret, sealed at rest.
    WebhookSecret,
}

impl Purpose {
    const ALL: [Purpose; 6] =
        [Self::SigningKey, Self::Outbox, Self::LoginCode, Self::DevApiKey, Self::OtpCode, Self::WebhookSecret];

    fn label(self) -> &'static str {
        match self {
            Self::SigningKey => "passgate/v1/signing-key",
            Self::Outbox => "passgate/v1/outbox",
            Self::LoginCode => "passgate/v1/login-code",
            Self::DevApiKey => "passgate/v1/dev-api-key",
            Self::OtpCode => "passgate/v1/otp-code",
            Self::WebhookSecret => "passgate/v1/webhook-secret",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key is not valid base64")]
    NotBase64,
    #[error("the secret key must decode to at least 32 bytes (it decodes to {0})")]
    TooShort(usize),
    #[error("sealed data could not be opened with the current or previous secret key")]
    CannotOpen,
}

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

struct DerivedKeys([Zeroizing<[u8; 32]>; 6]);

impl DerivedKeys {
    fn from_secret(secret: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"passgate"), secret);
        Self(Purpose::ALL.map(|p| {
            let mut key = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
            if hk.expand(p.label().as_bytes(), key.as_mut()).is_err() {
                unreachable!("HKDF output length is valid");
            }
            key
        }))
    }

    fn key(&self, p: Purpose) -> &[u8; 32] {
        &self.0[p.index()]
    }
}

/// The server secret, current and (during a rotation) previous.
pub struct ServerSecret {
    current: DerivedKeys,
    previous: Option<DerivedKeys>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret([REDACTED])")
    }
}

/// Decodes base64 in any of its common spellings (standard or URL-safe,
/// padded or not), because operators paste what their tool printed.
fn decode_any_base64(s: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
        .map(Zeroizing::new)
        .ok_or(SecretError::NotBase64)
}

fn parse_secret(s: &str) -> Result<DerivedKeys, SecretError> {
    let raw = decode_any_base64(s)?;
    if raw.len() < 32 {
        return Err(SecretError::TooShort(raw.len()));
    }
    Ok(DerivedKeys::from_secret(&raw))
}

impl ServerSecret {
    /// From base64 text, as configured.
    pub fn from_base64(current: &str, previous: Option<&str>) -> Result<Self, SecretError> {
        Ok(Self { current: parse_secret(current)?, previous: previous.map(parse_secret).transpose()? })
    }

    /// From raw bytes (dev mode generates its own).
    pub fn from_bytes(current: &[u8]) -> Result<Self, SecretError> {
        if current.len() < 32 {
            return Err(SecretError::TooShort(current.len()));
        }
        Ok(Self { current: DerivedKeys::from_secret(current), previous: None })
    }

    /// Encrypts `plaintext` for storage. Output: version ‖ nonce ‖ ciphertext+tag.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = crate::random::bytes();
        let cipher = Aes256Gcm::new(self.current.key(purpose).into());
        let payload = Payload { msg: plaintext, aad: purpose.label().as_bytes() };
        let Ok(ciphertext) = cipher.encrypt(&Nonce::from(nonce_bytes), payload) else {
            unreachable!("AES-GCM encryption fails only for inputs over 64 GiB");
        };
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts what [`seal`](Self::seal) produced, under the current or previous secret.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEAL_VERSION {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(nonce).map(Nonce::from) else {
            return Err(SecretError::CannotOpen);
        };
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find_map(|keys| {
                let cipher = Aes256Gcm::new(keys.key(purpose).into());
                let payload = Payload { msg: ciphertext, aad: purpose.label().as_bytes() };
                cipher.decrypt(&nonce, payload).ok()
            })
            .map(Zeroizing::new)
            .ok_or(SecretError::CannotOpen)
    }

    fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            unreachable!("HMAC accepts keys of any length");
        };
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of `data` under the current secret: what gets stored.
    pub fn keyed_hash(&self, purpose: Purpose, data: &[u8]) -> [u8; 32] {
        Self::mac(self.current.key(purpose), data)
    }

    /// Whether `stored` is the keyed hash of `data` under the current or the
    /// previous secret, compared in constant time.
    pub fn keyed_hash_matches(&self, purpose: Purpose, data: &[u8], stored: &[u8]) -> bool {
        let mut matched = false;
        for keys in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            // No early exit: both candidates are always computed and compared.
            matched |= crate::constant_time_eq(&Self::mac(keys.key(purpose), data), stored);
        }
        matched
    }

    /// Keyed hashes of `data` under the current and (during a rotation) the
    /// previous secret, for a store to compare against what it holds.
    pub fn keyed_hash_candidates(&self, purpose: Purpose, data: &[u8]) -> Vec<[u8; 32]> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(|keys| Self::mac(keys.key(purpose), data))
            .collect()
    }

    /// A value derived from the secret for `purpose` (stable across restarts).
    pub fn derive(&self, purpose: Purpose, context: &[u8]) -> [u8; 32] {
        self.keyed_hash(purpose, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn secret(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn seal_and_open_round_trip_and_are_purpose_bound() {
        let s = ServerSecret::from_base64(&secret(1), None).unwrap_or_else(|e| panic!("{e}"));
        let sealed = s.seal(Purpose::Outbox, b"hello");
        assert_ne!(&sealed[..], b"hello");
        assert_eq!(s.open(Purpose::Outbox, &sealed).map(|p| p.to_vec()), Ok(b"hello".to_vec()));
        assert_eq!(s.open(Purpose::SigningKey, &sealed), Err(SecretError::CannotOpen));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(s.open(Purpose::Outbox, &tampered), Err(SecretError::CannotOpen));
        // Fresh nonce each time.
        assert_ne!(s.seal(Purpose::Outbox, b"hello"), sealed);
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = ServerSecret::from_base64(&secret(1), None).unwrap_or_else(|e| panic!("{e}"));
        let sealed = old.seal(Purpose::SigningKey, b"k");
        let hash = old.keyed_hash(Purpose::LoginCode, b"123456");
        let rotated = ServerSecret::from_base64(&secret(2), Some(&secret(1))).unwrap_or_else(|e| panic!("{e}"));
        assert!(rotated.open(Purpose::SigningKey, &sealed).is_ok());
        assert!(rotated.keyed_hash_matches(Purpose::LoginCode, b"123456", &hash));
        assert!(!rotated.keyed_hash_matches(Purpose::LoginCode, b"123457", &hash));
        let unrelated = ServerSecret::from_base64(&secret(2), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(unrelated.open(Purpose::SigningKey, &sealed).is_err());
        assert!(!unrelated.keyed_hash_matches(Purpose::LoginCode, b"123456", &hash));
    }

    #[test]
    fn refuses_short_or_garbled_secrets() {
        assert_eq!(ServerSecret::from_base64(&STANDARD.encode([0u8; 16]), None).err(), Some(SecretError::TooShort(16)));
        assert_eq!(ServerSecret::from_base64("not base64 at all!", None).err(), Some(SecretError::NotBase64));
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 40]);
        assert!(ServerSecret::from_base64(&url_safe, None).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let s = ServerSecret::from_base64(&secret(7), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{s:?}"), "ServerSecret([REDACTED])");
    }
}
