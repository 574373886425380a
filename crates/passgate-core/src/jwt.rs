//! Result JWTs: compact JWS signed with Ed25519 (`alg: EdDSA`) and a `kid`.
//!
//! Written out by hand rather than through a general JWT library: we only
//! ever produce one algorithm, and a signer that cannot be configured into
//! `alg: none` or HS256 is the safest kind. Verification here is strict in
//! the same way (pinned algorithm, known `kid`, no key-bearing headers) and
//! serves the tests and the SDK.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Claims of the JWT returned by a successful verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub amr: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// An Ed25519 signing key and its key id.
pub struct JwtSigner {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the stored signing key is malformed")]
    BadKey,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's header is not acceptable (alg must be EdDSA with a known kid and no key headers)")]
    BadHeader,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the claims cannot be serialised")]
    Claims,
}

/// The key id of a public key: 16 characters of base64url over its SHA-256.
pub fn kid_for(public_key: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(&crate::sha256(public_key)[..12])
}

impl JwtSigner {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> Self {
        let seed = Zeroizing::new(crate::random::bytes::<32>());
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Self { kid: kid_for(&key.verifying_key().to_bytes()), key }
    }

    /// Rebuilds a key from its 32-byte seed as stored (after unsealing).
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, JwtError> {
        let seed: &[u8; 32] = bytes.try_into().map_err(|_| JwtError::BadKey)?;
        Ok(Self::from_seed(seed))
    }

    /// The 32-byte seed, to be sealed before storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` into a compact JWS. Fails closed: claims that cannot
    /// be serialised are an error, never an empty (or partial) token.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, JwtError> {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid });
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Claims)?;
        let claims = serde_json::to_vec(claims).map_err(|_| JwtError::Claims)?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = self.key.sign(signing_input.as_bytes());
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
    }
}

/// A public key as published in the JWKS (RFC 8037 OKP).
pub fn jwk(kid: &str, public_key: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(public_key),
    })
}

/// Verifies a compact JWS against `keys` (kid → public key) and returns its
/// claims. Checks the signature and header only; claim checks (`aud`, `iss`,
/// `exp`) are the caller's, since only it knows what to expect.
pub fn verify_signature(token: &str, keys: &[(String, [u8; 32])]) -> Result<serde_json::Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?)
            .map_err(|_| JwtError::Malformed)?;
    let header = header.as_object().ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA")
        || ["jku", "x5u", "jwk", "x5c", "crit"].iter().any(|k| header.contains_key(*k))
    {
        return Err(JwtError::BadHeader);
    }
    let kid = header.get("kid").and_then(|k| k.as_str()).ok_or(JwtError::BadHeader)?;
    let public = keys.iter().find(|(k, _)| k == kid).map(|(_, p)| p).ok_or(JwtError::BadHeader)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| JwtError::BadKey)?;
    let sig_bytes: [u8; 64] =
        URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?.try_into().map_err(|_| JwtError::Malformed)?;
    let signature = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    key.verify(format!("{h}.{c}").as_bytes(), &signature).map_err(|_| JwtError::BadSignature)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).map_err(|_| JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> LoginClaims {
        LoginClaims {
            iss: "http://127.0.0.1:8080".into(),
            aud: "prj_1".into(),
            sub: "usr_1".into(),
            email: "ada@example.com".into(),
            email_verified: true,
            amr: vec!["email_link".into()],
            iat: 1,
            exp: 301,
            jti: "j".into(),
        }
    }

    #[test]
    fn signs_and_verifies_with_the_published_key() {
        let signer = JwtSigner::generate();
        let token = signer.sign(&claims()).unwrap_or_else(|e| panic!("{e}"));
        let keys = vec![(signer.kid().to_string(), signer.public_key())];
        let got = verify_signature(&token, &keys).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got["email"], "ada@example.com");
        let header = token.split('.').next().unwrap_or_default();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap_or_default()).unwrap_or_default();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], signer.kid());
    }

    #[test]
    fn rejects_other_keys_tampering_and_alg_none() {
        let signer = JwtSigner::generate();
        let other = JwtSigner::generate();
        let token = signer.sign(&claims()).unwrap_or_else(|e| panic!("{e}"));
        let other_keys = vec![(signer.kid().to_string(), other.public_key())];
        assert_eq!(verify_signature(&token, &other_keys), Err(JwtError::BadSignature));
        let keys = vec![(signer.kid().to_string(), signer.public_key())];
        let mut parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, signer.kid()));
        parts[0] = &none_header;
        assert_eq!(verify_signature(&parts.join("."), &keys), Err(JwtError::BadHeader));
        let restored = JwtSigner::from_secret_bytes(&signer.secret_bytes()[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.kid(), signer.kid());
        assert_eq!(restored.public_key(), signer.public_key());
    }
}
