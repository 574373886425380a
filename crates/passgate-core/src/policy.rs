//! Project email policy: who may receive a login email at all.
//!
//! With neither list set, every address is allowed. Otherwise an address is
//! allowed when its domain is exactly one of `allowed_domains` (subdomains
//! are not implied: `example.com` does not admit `evil.example.com`, which
//! anyone can register under some parents) or the whole address is one of
//! `allowed_emails`. Both lists are canonicalised like addresses.

use crate::email::EmailAddress;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailPolicy {
    pub allowed_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
}

impl EmailPolicy {
    pub fn allows(&self, email: &EmailAddress) -> bool {
        if self.allowed_domains.is_empty() && self.allowed_emails.is_empty() {
            return true;
        }
        self.allowed_domains.iter().any(|d| d == email.domain())
            || self.allowed_emails.iter().any(|e| e == email.as_str())
    }
}

/// Canonicalises a domain given by an operator (`Bücher.Example` → `xn--bcher-kva.example`).
pub fn canonical_domain(domain: &str) -> Option<String> {
    EmailAddress::parse(&format!("x@{}", domain.trim())).ok().map(|e| e.domain().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn empty_policy_allows_everyone() {
        assert!(EmailPolicy::default().allows(&email("a@b.example")));
    }

    #[test]
    fn domains_match_exactly_and_emails_add_to_them() {
        let p = EmailPolicy {
            allowed_domains: vec!["example.com".into()],
            allowed_emails: vec!["guest@other.example".into()],
        };
        assert!(p.allows(&email("Ada@EXAMPLE.com")));
        assert!(p.allows(&email("guest@other.example")));
        assert!(!p.allows(&email("ada@evil.example.com")));
        assert!(!p.allows(&email("ada@example.com.evil")));
        assert!(!p.allows(&email("other@other.example")));
    }

    #[test]
    fn operator_domains_are_canonicalised() {
        assert_eq!(canonical_domain(" Bücher.Example ").as_deref(), Some("xn--bcher-kva.example"));
        assert_eq!(canonical_domain("not a domain"), None);
    }
}
