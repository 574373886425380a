//! The 6-digit fallback code of a link login (`includeCode`), for a user who
//! reads the email on another device.
//!
//! A million possibilities is little, which is why codes are kept keyed-hashed
//! under the server secret (a database dump does not give them away by
//! enumeration) and why three wrong tries burn the login.

use secrecy::{ExposeSecret, SecretString};

use crate::random;

pub const CODE_LEN: usize = 6;

/// A fallback code in clear.
#[derive(Debug, Clone)]
pub struct LoginCode(SecretString);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a code is 6 digits")]
pub struct CodeFormatError;

impl LoginCode {
    pub fn generate() -> Self {
        Self(SecretString::from(random::string_from(b"0123456789", CODE_LEN)))
    }

    /// Accepts what a user typed: spaces and hyphens are dropped
    /// (`123 456`, `123-456`), then exactly six digits must remain.
    pub fn parse(s: &str) -> Result<Self, CodeFormatError> {
        if s.len() > 32 {
            return Err(CodeFormatError);
        }
        let digits: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if digits.len() == CODE_LEN && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(SecretString::from(digits)))
        } else {
            Err(CodeFormatError)
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let c = LoginCode::generate();
            assert_eq!(c.expose().len(), 6);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn parse_tolerates_spaces_and_hyphens_only() {
        assert_eq!(LoginCode::parse("123 456").map(|c| c.expose().to_string()), Ok("123456".into()));
        assert_eq!(LoginCode::parse("123-456").map(|c| c.expose().to_string()), Ok("123456".into()));
        assert!(LoginCode::parse("12345").is_err());
        assert!(LoginCode::parse("1234567").is_err());
        assert!(LoginCode::parse("12345a").is_err());
        assert!(LoginCode::parse("١٢٣٤٥٦").is_err());
    }
}
