//! PKCE (RFC 7636, S256) for link logins: the browser that starts a login
//! keeps the verifier, so a link opened anywhere else (an email scanner, an
//! intercepted link) cannot be redeemed and is not used up.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A PKCE verifier and its S256 challenge.
///
/// ```
/// let pkce = passgate_client::Pkce::generate();
/// assert_eq!(pkce.verifier().len(), 43);
/// assert_eq!(pkce.challenge(), passgate_client::Pkce::challenge_of(pkce.verifier()));
/// ```
#[derive(Clone)]
pub struct Pkce {
    verifier: String,
}

impl Pkce {
    /// A fresh verifier: 32 bytes from the OS CSPRNG, base64url (43 characters).
    pub fn generate() -> Self {
        Self { verifier: crate::random::token::<32>() }
    }

    /// The verifier, for `verify` (keep it in the browser's cookie, never in a URL).
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The challenge, for `start`: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        Self::challenge_of(&self.verifier)
    }

    /// The S256 challenge of any verifier.
    pub fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkce([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    #[test]
    fn the_challenge_matches_the_rfc_example() {
        assert_eq!(
            Pkce::challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_fresh_and_hidden() {
        let (a, b) = (Pkce::generate(), Pkce::generate());
        assert_ne!(a.verifier(), b.verifier());
        assert!(!format!("{a:?}").contains(a.verifier()));
    }
}
