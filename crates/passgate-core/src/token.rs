//! Link tokens: 48 characters of `[A-Za-z0-9]` from the OS CSPRNG (≈285 bits).
//!
//! The plaintext exists only between generation and the email, and between
//! the request body and hashing at verify; at rest there is only SHA-256.
//! A plain hash (not a keyed one) is enough: with 285 bits of entropy there is
//! nothing to brute-force, and it lets the database index the hash directly.

use secrecy::{ExposeSecret, SecretString};

use crate::random;

/// Length of every link token.
pub const TOKEN_LEN: usize = 48;

/// A link token in clear. `Debug` is redacted by [`SecretString`].
#[derive(Debug, Clone)]
pub struct LinkToken(SecretString);

/// SHA-256 of a link token: what the store keeps and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token is exactly 48 characters of A-Z, a-z and 0-9")]
pub struct TokenFormatError;

impl LinkToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(SecretString::from(random::string_from(random::ALPHANUMERIC, TOKEN_LEN)))
    }

    /// Accepts a token presented at verify, checking its shape only.
    pub fn parse(s: &str) -> Result<Self, TokenFormatError> {
        if s.len() == TOKEN_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(SecretString::from(s.to_string())))
        } else {
            Err(TokenFormatError)
        }
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(crate::sha256(self.0.expose_secret().as_bytes()))
    }

    /// The clear text, for the one place that needs it: the email.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// SECURITY S1: 10,000 tokens, all distinct and well formed.
    #[test]
    fn ten_thousand_tokens_are_distinct_and_well_formed() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let t = LinkToken::generate();
            assert_eq!(t.expose().len(), TOKEN_LEN);
            assert!(t.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(t.expose().to_string()));
        }
    }

    #[test]
    fn parse_checks_the_shape() {
        let t = LinkToken::generate();
        assert!(LinkToken::parse(t.expose()).is_ok());
        assert_eq!(LinkToken::parse(t.expose()).map(|p| p.hash()), Ok(t.hash()));
        assert!(LinkToken::parse(&t.expose()[..47]).is_err());
        assert!(LinkToken::parse(&format!("{}!", &t.expose()[..47])).is_err());
        assert!(LinkToken::parse("").is_err());
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let t = LinkToken::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}
