//! Client-signed session requests ("stamps") in the format of Turnkey's
//! `@turnkey/api-key-stamper`, so its libraries sign requests to passgate
//! unchanged: the `X-Stamp` header is base64url (no padding) of the JSON
//! `{publicKey, scheme, signature}`, where `publicKey` is the hex of the
//! 33-byte compressed P-256 key, `scheme` is `SIGNATURE_SCHEME_TK_API_P256`
//! and `signature` the hex of a DER ECDSA-SHA256 signature over the exact
//! body bytes.
//!
//! The body names what it is for: `action` must equal the endpoint's last
//! path segment, so a stamp for one endpoint is useless on another, and
//! `timestampMs` must lie within five minutes of the server's time. What
//! remains is replay inside that window, which the store refuses by the
//! [`StampedRequest::replay_digest`].
//!
//! High-S signatures are accepted: WebCrypto produces them, and Turnkey
//! accepts them. That makes a signature malleable — `(r, s)` and
//! `(r, n - s)` both verify — so the replay record is keyed on what was
//! signed (the key and the body), never on the signature's bytes.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};

use crate::time::Timestamp;

pub const SCHEME: &str = "SIGNATURE_SCHEME_TK_API_P256";
/// How far `timestampMs` may lie from the server's time, either way.
pub const STAMP_WINDOW_MILLIS: i64 = 5 * 60 * 1000;
/// The header's largest accepted size: a stamp is about 300 bytes.
const MAX_HEADER_LEN: usize = 2048;

/// Why a stamp was refused; every case is `401 stamp_invalid` at the edge,
/// and the message says which for the developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("the X-Stamp header is missing")]
    Missing,
    #[error("the X-Stamp header is not base64url JSON with publicKey, scheme and signature")]
    Malformed,
    #[error("the stamp's scheme is not SIGNATURE_SCHEME_TK_API_P256")]
    Scheme,
    #[error("the stamp's publicKey is not a compressed P-256 public key in hex")]
    PublicKey,
    #[error("the stamp's signature does not verify over the request body")]
    Signature,
    #[error("the body must be a JSON object")]
    Body,
    #[error("the body's action does not name this endpoint")]
    Action,
    #[error("the body's timestampMs is missing or more than five minutes from the server's time")]
    Timestamp,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StampJson {
    public_key: String,
    scheme: String,
    signature: String,
}

/// A request whose stamp verified over its body, whose `action` names the
/// endpoint and whose `timestampMs` is fresh. Not yet checked: that the key
/// is a live session key, and that the body was not seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampedRequest {
    /// Hex of the 33-byte compressed key, as the client sent it (lower case).
    public_key: String,
    replay_digest: [u8; 32],
    timestamp: Timestamp,
    body: serde_json::Map<String, serde_json::Value>,
}

impl StampedRequest {
    /// Checks `header` over `body` for the endpoint whose action is
    /// `action`, at `now`: the signature first (so nothing unsigned is read),
    /// then the body's `action` and `timestampMs`.
    pub fn verify(header: Option<&[u8]>, body: &[u8], action: &str, now: Timestamp) -> Result<Self, StampError> {
        let header = header.ok_or(StampError::Missing)?;
        if header.len() > MAX_HEADER_LEN {
            return Err(StampError::Malformed);
        }
        let trimmed = header.trim_ascii();
        let json =
            URL_SAFE_NO_PAD.decode(trimmed).or_else(|_| URL_SAFE.decode(trimmed)).map_err(|_| StampError::Malformed)?;
        let stamp: StampJson = serde_json::from_slice(&json).map_err(|_| StampError::Malformed)?;
        if stamp.scheme != SCHEME {
            return Err(StampError::Scheme);
        }
        let key_bytes = hex::decode(&stamp.public_key).map_err(|_| StampError::PublicKey)?;
        if !matches!((key_bytes.len(), key_bytes.first()), (33, Some(2 | 3))) {
            return Err(StampError::PublicKey);
        }
        let key = VerifyingKey::from_sec1_bytes(&key_bytes).map_err(|_| StampError::PublicKey)?;
        let der = hex::decode(&stamp.signature).map_err(|_| StampError::Signature)?;
        let signature = Signature::from_der(&der).map_err(|_| StampError::Signature)?;
        key.verify(body, &signature).map_err(|_| StampError::Signature)?;

        let serde_json::Value::Object(fields) = serde_json::from_slice(body).map_err(|_| StampError::Body)? else {
            return Err(StampError::Body);
        };
        if fields.get("action").and_then(serde_json::Value::as_str) != Some(action) {
            return Err(StampError::Action);
        }
        let timestamp = fields.get("timestampMs").and_then(timestamp_millis).ok_or(StampError::Timestamp)?;
        if (timestamp - now.millis()).abs() > STAMP_WINDOW_MILLIS {
            return Err(StampError::Timestamp);
        }
        Ok(Self {
            public_key: hex::encode(&key_bytes),
            replay_digest: replay_digest(&key_bytes, body),
            timestamp: Timestamp(timestamp),
            body: fields,
        })
    }

    /// The session key that signed, as stored (compressed, lower-case hex).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// What a replay is recognised by: SHA-256 over a label, the key and
    /// the body — the signed content, not the (malleable) signature.
    pub fn replay_digest(&self) -> [u8; 32] {
        self.replay_digest
    }

    /// The body's `timestampMs`.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Until when a replay of this body must be refused: the end of the
    /// window its timestamp is accepted in.
    pub fn replay_window_end(&self) -> Timestamp {
        self.timestamp.plus_millis(STAMP_WINDOW_MILLIS + 1)
    }

    /// The body's other fields (an endpoint's parameters).
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.body.get(name)
    }
}

fn replay_digest(key: &[u8], body: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"passgate/v1/stamp\0");
    hash.update(key);
    hash.update(body);
    hash.finalize().into()
}

/// `timestampMs` as a string of digits or a whole number.
fn timestamp_millis(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(text)
            if !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse().ok()
        }
        serde_json::Value::Number(n) => n.as_i64().filter(|ms| *ms >= 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    use super::*;

    const NOW: Timestamp = Timestamp(1_795_219_200_000);

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn stamp_with(key: &SigningKey, signature: &Signature) -> Vec<u8> {
        let public = hex::encode(key.verifying_key().to_sec1_point(true).as_bytes());
        let json = serde_json::json!({"publicKey": public, "scheme": SCHEME, "signature": hex::encode(signature.to_der().as_bytes())});
        URL_SAFE_NO_PAD.encode(json.to_string()).into_bytes()
    }

    fn stamp(key: &SigningKey, body: &[u8]) -> Vec<u8> {
        let signature: Signature = key.sign(body);
        stamp_with(key, &signature)
    }

    fn body(action: &str, timestamp: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"action": action, "timestampMs": timestamp}).to_string().into_bytes()
    }

    #[test]
    fn a_good_stamp_verifies_with_either_spelling_of_the_timestamp() {
        let key = key();
        for ts in [serde_json::json!(NOW.millis().to_string()), serde_json::json!(NOW.millis())] {
            let body = body("whoami", ts);
            let stamped = StampedRequest::verify(Some(&stamp(&key, &body)), &body, "whoami", NOW);
            let stamped = stamped.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(stamped.public_key(), hex::encode(key.verifying_key().to_sec1_point(true).as_bytes()));
            assert_eq!(stamped.timestamp(), NOW);
        }
    }

    #[test]
    fn high_s_signatures_verify_and_replay_as_the_same_request() {
        let key = key();
        let body = body("whoami", serde_json::json!(NOW.millis()));
        let low: Signature = key.sign(&body);
        let low = low.normalize_s();
        // n - s: the other signature of the same content.
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(high.to_der().as_bytes(), low.to_der().as_bytes());
        let a = StampedRequest::verify(Some(&stamp_with(&key, &low)), &body, "whoami", NOW);
        let b = StampedRequest::verify(Some(&stamp_with(&key, &high)), &body, "whoami", NOW);
        let (a, b) = (a.unwrap_or_else(|e| panic!("{e}")), b.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(a.replay_digest(), b.replay_digest(), "one content, one replay record");
    }

    #[test]
    fn what_is_refused_and_why() {
        let key = key();
        let good = body("whoami", serde_json::json!(NOW.millis()));
        let header = stamp(&key, &good);
        let check = |header: Option<&[u8]>, body: &[u8], action: &str, now: Timestamp| {
            StampedRequest::verify(header, body, action, now).err()
        };
        assert_eq!(check(None, &good, "whoami", NOW), Some(StampError::Missing));
        assert_eq!(check(Some(b"!!!"), &good, "whoami", NOW), Some(StampError::Malformed));
        assert_eq!(check(Some(&vec![b'A'; 4096]), &good, "whoami", NOW), Some(StampError::Malformed));
        let changed = body("whoami", serde_json::json!(NOW.millis() + 1));
        assert_eq!(
            check(Some(&header), &changed, "whoami", NOW),
            Some(StampError::Signature),
            "a body changed after signing"
        );
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        let forged = {
            let signature: Signature = other.sign(&good);
            let public = hex::encode(key.verifying_key().to_sec1_point(true).as_bytes());
            let json = serde_json::json!({"publicKey": public, "scheme": SCHEME, "signature": hex::encode(signature.to_der().as_bytes())});
            URL_SAFE_NO_PAD.encode(json.to_string()).into_bytes()
        };
        assert_eq!(check(Some(&forged), &good, "whoami", NOW), Some(StampError::Signature), "signed by another key");
        assert_eq!(check(Some(&header), &good, "revoke", NOW), Some(StampError::Action), "for another endpoint");
        let stale = NOW.plus_millis(STAMP_WINDOW_MILLIS + 1);
        assert_eq!(check(Some(&header), &good, "whoami", stale), Some(StampError::Timestamp), "stale");
        let early = Timestamp(NOW.millis() - STAMP_WINDOW_MILLIS - 1);
        assert_eq!(check(Some(&header), &good, "whoami", early), Some(StampError::Timestamp), "from the future");
        assert!(check(Some(&header), &good, "whoami", NOW.plus_millis(STAMP_WINDOW_MILLIS)).is_none(), "at the edge");
        for bad in [serde_json::json!("12a"), serde_json::json!(-5), serde_json::json!(1.5), serde_json::json!(null)] {
            let body = body("whoami", bad);
            assert_eq!(check(Some(&stamp(&key, &body)), &body, "whoami", NOW), Some(StampError::Timestamp));
        }
        let array = b"[1,2]".to_vec();
        assert_eq!(check(Some(&stamp(&key, &array)), &array, "whoami", NOW), Some(StampError::Body));
        let json = serde_json::json!({"publicKey": hex::encode(key.verifying_key().to_sec1_point(false).as_bytes()), "scheme": SCHEME, "signature": "30"});
        let uncompressed = URL_SAFE_NO_PAD.encode(json.to_string()).into_bytes();
        assert_eq!(check(Some(&uncompressed), &good, "whoami", NOW), Some(StampError::PublicKey));
        let json =
            serde_json::json!({"publicKey": "02", "scheme": "SIGNATURE_SCHEME_TK_API_ED25519", "signature": "30"});
        assert_eq!(
            check(Some(URL_SAFE_NO_PAD.encode(json.to_string()).as_bytes()), &good, "whoami", NOW),
            Some(StampError::Scheme)
        );
    }
}
