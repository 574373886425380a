//! Email addresses: parsed once, at the edge, into their canonical form.
//!
//! The canonical form is what passgate stores, compares, rate-limits and
//! puts in JWTs: surrounding spaces trimmed, the whole address lower-cased,
//! the domain IDNA-encoded (`Ada@Bücher.Example` → `ada@xn--bcher-kva.example`).
//!
//! What is refused, and why:
//! - control characters anywhere (CR/LF would let a caller inject headers
//!   into the email we send; RFC 5321 never allows them);
//! - more than 254 characters in all, or more than 64 in the local part
//!   (RFC 5321 §4.5.3.1);
//! - quoted local parts and non-ASCII local parts: legal in theory, rare in
//!   practice, and a gift to look-alike attacks; we prefer a clear refusal;
//! - `=?` (the start of an RFC 2047 encoded word, which some mail software
//!   decodes in addresses), `%` and `!` (source routing through a relay:
//!   `user%other.example@relay`, `relay!user`) in the local part: legal
//!   atext, but tricks against the mail systems downstream;
//! - domains that are not DNS names with at least two labels (no IP
//!   literals, no bare `localhost`).

use std::fmt;

/// Longest address RFC 5321 lets through a `RCPT TO` path.
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;

/// A syntactically valid email address in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

/// Why an address was refused. The messages are safe to show to API callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address contains a control character")]
    ControlCharacter,
    #[error("the email address is empty")]
    Empty,
    #[error("the email address has no @")]
    MissingAt,
    #[error("the email address is longer than 254 characters")]
    TooLong,
    #[error("the local part (before @) is longer than 64 characters")]
    LocalPartTooLong,
    #[error("the local part (before @) is not valid")]
    InvalidLocalPart,
    #[error("the domain (after @) is not a valid domain name")]
    InvalidDomain,
}

impl EmailAddress {
    /// Parses and canonicalises an address given by a caller.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        if input.chars().any(char::is_control) {
            return Err(EmailError::ControlCharacter);
        }
        // Bound the work before doing any: IDNA on a megabyte is not free.
        if input.len() > MAX_EMAIL_LEN * 4 {
            return Err(EmailError::TooLong);
        }
        let trimmed = input.trim_matches(' ');
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::MissingAt)?;
        let local = parse_local_part(local)?;
        let domain = parse_domain(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, already lower-case and IDNA-encoded.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b)
}

fn parse_local_part(local: &str) -> Result<String, EmailError> {
    if local.is_empty() {
        return Err(EmailError::InvalidLocalPart);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong);
    }
    let ok = local.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    let routing_or_encoded = local.contains("=?") || local.contains(['%', '!']);
    if !ok || routing_or_encoded {
        return Err(EmailError::InvalidLocalPart);
    }
    Ok(local.to_ascii_lowercase())
}

fn parse_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_empty() || domain.starts_with('[') {
        return Err(EmailError::InvalidDomain);
    }
    // UTS 46 with STD3 rules: maps case and compatibility forms, refuses
    // disallowed code points, and punycode-encodes what is left.
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::InvalidDomain)?;
    let ascii = ascii.to_ascii_lowercase();
    if ascii.len() > 253 {
        return Err(EmailError::InvalidDomain);
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(EmailError::InvalidDomain);
    }
    for label in &labels {
        let valid = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(EmailError::InvalidDomain);
        }
    }
    // An all-numeric last label means an IP address in disguise (`1.2.3.4`).
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(EmailError::InvalidDomain);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> String {
        match EmailAddress::parse(s) {
            Ok(e) => e.into_string(),
            Err(e) => panic!("{s:?} refused: {e}"),
        }
    }

    #[test]
    fn canonicalises_case_spaces_and_idn() {
        assert_eq!(ok("  Ada@Bücher.Example "), "ada@xn--bcher-kva.example");
        assert_eq!(ok("ADA.Lovelace+tag@Example.COM"), "ada.lovelace+tag@example.com");
        assert_eq!(ok("a@xn--bcher-kva.example"), "a@xn--bcher-kva.example");
    }

    #[test]
    fn refuses_what_the_contract_refuses() {
        use EmailError::*;
        let cases: &[(&str, EmailError)] = &[
            ("", Empty),
            ("   ", Empty),
            ("ada.example.com", MissingAt),
            ("ada@example.com\r\nBcc: x@evil.test", ControlCharacter),
            ("ada@exa\nmple.com", ControlCharacter),
            ("ada\t@example.com", ControlCharacter),
            ("ada@example.com\u{0}", ControlCharacter),
            ("@example.com", InvalidLocalPart),
            ("ada.@example.com", InvalidLocalPart),
            ("a..b@example.com", InvalidLocalPart),
            ("\"ada\"@example.com", InvalidLocalPart),
            ("adä@example.com", InvalidLocalPart),
            ("a b@example.com", InvalidLocalPart),
            ("=?utf-8?q?ada?=@example.com", InvalidLocalPart),
            ("ada=?x@example.com", InvalidLocalPart),
            ("ada%evil.test@example.com", InvalidLocalPart),
            ("evil.test!ada@example.com", InvalidLocalPart),
            ("ada@", InvalidDomain),
            ("ada@localhost", InvalidDomain),
            ("ada@[127.0.0.1]", InvalidDomain),
            ("ada@1.2.3.4", InvalidDomain),
            ("ada@-bad.example", InvalidDomain),
            ("ada@exa_mple.com", InvalidDomain),
            ("ada@example..com", InvalidDomain),
        ];
        for (input, want) in cases {
            assert_eq!(EmailAddress::parse(input).as_ref().err(), Some(want), "{input:?}");
        }
    }

    #[test]
    fn enforces_rfc5321_lengths() {
        let local64 = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local64}@example.com")).is_ok());
        assert_eq!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))), Err(EmailError::LocalPartTooLong));
        // 64 + 1 + 189 = 254 characters: the longest allowed.
        let domain = format!("{}.{}.{}.com", "b".repeat(60), "c".repeat(60), "d".repeat(63));
        let longest = format!("{local64}@{domain}");
        assert_eq!(longest.len(), 254);
        assert!(EmailAddress::parse(&longest).is_ok());
        let too_long = format!("{local64}@e{domain}");
        assert_eq!(EmailAddress::parse(&too_long), Err(EmailError::TooLong));
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_addresses_are_canonical(s in "\\PC{0,80}") {
            if let Ok(e) = EmailAddress::parse(&s) {
                let c = e.as_str();
                prop_assert!(c.len() <= MAX_EMAIL_LEN);
                prop_assert!(c.is_ascii());
                prop_assert_eq!(c.to_ascii_lowercase(), c.to_string());
                prop_assert!(!c.chars().any(char::is_control));
                // Canonical means a fixed point.
                prop_assert_eq!(EmailAddress::parse(c).map(EmailAddress::into_string), Ok(c.to_string()));
            }
        }

        #[test]
        fn any_control_character_is_refused(
            prefix in "[a-z]{1,10}", c in proptest::char::range('\u{0}', '\u{1f}'), suffix in "[a-z]{0,5}@example\\.com"
        ) {
            let input = format!("{prefix}{c}{suffix}");
            prop_assert_eq!(EmailAddress::parse(&input), Err(EmailError::ControlCharacter));
        }

        #[test]
        fn well_formed_addresses_round_trip(local in "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}[a-zA-Z0-9]", domain in "[a-z]{1,20}\\.(com|org|example)") {
            prop_assume!(!local.contains(".."));
            let parsed = EmailAddress::parse(&format!("{local}@{domain}"));
            prop_assert_eq!(parsed.map(EmailAddress::into_string), Ok(format!("{}@{}", local.to_ascii_lowercase(), domain)));
        }
    }
}
