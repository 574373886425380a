//! PKCE (RFC 7636), S256 only: the app sends `codeChallenge` =
//! BASE64URL(SHA256(verifier)) at start and the verifier at verify, so a
//! link opened by a mail scanner or an interceptor cannot be redeemed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

/// A `codeChallenge`: 43 characters of base64url (a SHA-256, unpadded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

/// A `codeVerifier`: 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
#[derive(Debug, Clone)]
pub struct CodeVerifier(SecretString);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("codeChallenge must be the 43-character base64url SHA-256 of the verifier (S256)")]
    BadChallenge,
    #[error("codeVerifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'")]
    BadVerifier,
}

impl CodeChallenge {
    pub fn parse(s: &str) -> Result<Self, PkceError> {
        let decoded = URL_SAFE_NO_PAD.decode(s).map_err(|_| PkceError::BadChallenge)?;
        if s.len() == 43 && decoded.len() == 32 { Ok(Self(s.to_string())) } else { Err(PkceError::BadChallenge) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl CodeVerifier {
    pub fn parse(s: &str) -> Result<Self, PkceError> {
        let ok = (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if ok { Ok(Self(SecretString::from(s.to_string()))) } else { Err(PkceError::BadVerifier) }
    }

    /// The S256 challenge this verifier answers.
    pub fn challenge(&self) -> CodeChallenge {
        CodeChallenge(URL_SAFE_NO_PAD.encode(crate::sha256(self.0.expose_secret().as_bytes())))
    }

    /// Whether this verifier answers `challenge`, compared in constant time.
    pub fn answers(&self, challenge: &str) -> bool {
        crate::constant_time_eq(self.challenge().as_str().as_bytes(), challenge.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let v = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.challenge().as_str(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(v.answers("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!v.answers("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
    }

    #[test]
    fn shapes_are_checked() {
        assert!(CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").is_ok());
        assert!(CodeChallenge::parse("plain-verifier-is-not-a-challenge").is_err());
        assert!(CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=").is_err());
        assert!(CodeVerifier::parse(&"a".repeat(42)).is_err());
        assert!(CodeVerifier::parse(&"a".repeat(129)).is_err());
        assert!(CodeVerifier::parse(&format!("{}!", "a".repeat(43))).is_err());
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_ok());
    }
}
