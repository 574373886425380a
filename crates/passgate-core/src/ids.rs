//! Prefixed, opaque identifiers (`prj_…`, `lgn_…`, …).
//!
//! The body is a UUIDv7 in lower-case hex: time-ordered, so rows inserted
//! together sit together in B-tree indexes, and unguessable enough that an id
//! is never mistaken for a credential (ids are not secrets; keys are).

/// The kinds of identifiers passgate hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Project,
    User,
    Login,
    ApiKey,
    Email,
    Event,
    Request,
    Organization,
    Invite,
    Otp,
    Session,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Project => "prj",
            Self::User => "usr",
            Self::Login => "lgn",
            Self::ApiKey => "key",
            Self::Email => "eml",
            Self::Event => "evt",
            Self::Request => "req",
            Self::Organization => "org",
            Self::Invite => "inv",
            Self::Otp => "otp",
            Self::Session => "ses",
        }
    }

    /// A fresh id of this kind.
    pub fn generate(self) -> String {
        format!("{}_{}", self.prefix(), uuid::Uuid::now_v7().simple())
    }

    /// Whether `s` is shaped like an id of this kind. Ids from outside are
    /// checked before they reach a query, so a malformed one is a clean 404.
    pub fn matches(self, s: &str) -> bool {
        let Some(body) = s.strip_prefix(self.prefix()).and_then(|r| r.strip_prefix('_')) else {
            return false;
        };
        (1..=64).contains(&body.len()) && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_are_distinct() {
        let a = IdKind::Login.generate();
        let b = IdKind::Login.generate();
        assert!(a.starts_with("lgn_"));
        assert_ne!(a, b);
        assert!(IdKind::Login.matches(&a));
        assert!(!IdKind::User.matches(&a));
        assert!(!IdKind::Login.matches("lgn_"));
        assert!(!IdKind::Login.matches("lgn_a b"));
    }
}
