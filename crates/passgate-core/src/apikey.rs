//! Project secret keys: `sk_live_…` (or `sk_test_…` for a dev project)
//! followed by 40 characters from the OS CSPRNG (≈238 bits).
//!
//! Shown once at creation; stored as SHA-256 only. Lookup is by that hash,
//! which is safe to index: an attacker cannot steer the hash of their guess
//! toward a stored one, so timing of the lookup reveals nothing useful; the
//! matched row's hash is then compared again in constant time.

use secrecy::{ExposeSecret, SecretString};

use crate::random;

const BODY_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    fn prefix(self) -> &'static str {
        match self {
            Self::Live => "sk_live_",
            Self::Test => "sk_test_",
        }
    }
}

/// A secret key in clear.
#[derive(Debug, Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    pub fn generate(mode: KeyMode) -> Self {
        Self::from_body(mode, &random::string_from(random::ALPHANUMERIC, BODY_LEN))
    }

    /// A key whose random part is derived elsewhere (the dev project's key is
    /// derived from the dev secret so it can be printed at every start).
    pub fn from_body(mode: KeyMode, body: &str) -> Self {
        Self(SecretString::from(format!("{}{body}", mode.prefix())))
    }

    /// Accepts a presented key if it has the right shape.
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix("sk_live_").or_else(|| s.strip_prefix("sk_test_"))?;
        (body.len() == BODY_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(SecretString::from(s.to_string())))
    }

    pub fn hash(&self) -> [u8; 32] {
        crate::sha256(self.0.expose_secret().as_bytes())
    }

    /// A short, non-secret hint shown in `key list` (`sk_live_AbCd…`): the
    /// prefix plus 4 of 40 random characters, too few to help a guesser.
    pub fn hint(&self) -> String {
        let s = self.0.expose_secret();
        format!("{}…", &s[..s.len().min(12)])
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_prefix_and_parse_back() {
        let k = ApiKey::generate(KeyMode::Live);
        assert!(k.expose().starts_with("sk_live_"));
        assert_eq!(k.expose().len(), 48);
        assert_eq!(ApiKey::parse(k.expose()).map(|p| p.hash()), Some(k.hash()));
        assert!(ApiKey::generate(KeyMode::Test).expose().starts_with("sk_test_"));
        assert!(ApiKey::parse("sk_live_short").is_none());
        assert!(ApiKey::parse("pk_live_0123456789012345678901234567890123456789").is_none());
        assert_eq!(k.hint().chars().count(), 13);
    }
}
