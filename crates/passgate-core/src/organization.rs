//! Organizations and the roles of their members. A role is a short string
//! of the app's choosing: passgate stores and returns it, and never reads
//! meaning into it.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("name must be 1 to 200 characters, without control characters")]
    Name,
    #[error("role must be 1 to 64 characters of A-Z a-z 0-9 _ - . :")]
    Role,
}

/// The longest organization name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// The longest role, in characters.
pub const ROLE_MAX_CHARS: usize = 64;
/// The most members an organization may be created with in one request.
pub const INITIAL_MEMBERS_MAX: usize = 100;

/// An organization's name, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationName(String);

impl OrganizationName {
    pub fn parse(s: &str) -> Result<Self, OrganizationError> {
        let trimmed = s.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > NAME_MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(OrganizationError::Name);
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A member's role: 1 to 64 of `A-Z a-z 0-9 _ - . :` (`admin`,
/// `billing:read`, `org.owner`), compared exactly. Narrow on purpose: a
/// role ends up in the app's authorization checks and in logs, where
/// spaces, look-alike characters and case folding cause mistakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role(String);

impl Role {
    pub fn parse(s: &str) -> Result<Self, OrganizationError> {
        let ok = (1..=ROLE_MAX_CHARS).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok { Ok(Self(s.to_string())) } else { Err(OrganizationError::Role) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn roles_are_short_plain_strings() {
        for ok in ["admin", "member", "billing:read", "org.owner", "A-1_b", &"r".repeat(64)] {
            assert!(Role::parse(ok).is_ok(), "{ok}");
        }
        for refused in ["", " admin", "admin ", "ad min", "rôle", "a/b", "a\nb", &"r".repeat(65)] {
            assert_eq!(Role::parse(refused), Err(OrganizationError::Role), "{refused:?}");
        }
    }

    #[test]
    fn names_are_trimmed_single_lines() {
        assert_eq!(OrganizationName::parse("  Acme Corp ").map(OrganizationName::into_string), Ok("Acme Corp".into()));
        for refused in ["", "  ", "Acme\nCorp"] {
            assert_eq!(OrganizationName::parse(refused), Err(OrganizationError::Name), "{refused:?}");
        }
        assert!(OrganizationName::parse(&"ü".repeat(200)).is_ok());
        assert!(OrganizationName::parse(&"ü".repeat(201)).is_err());
    }

    proptest! {
        /// Exactly the strings of the documented alphabet and length are roles,
        /// and a role is kept as given.
        #[test]
        fn roles_are_exactly_the_documented_strings(s in "\\PC{0,70}") {
            let expected = (1..=64).contains(&s.len())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
            match Role::parse(&s) {
                Ok(role) => {
                    prop_assert!(expected);
                    prop_assert_eq!(role.as_str(), s.as_str());
                }
                Err(_) => prop_assert!(!expected),
            }
        }

        #[test]
        fn generated_roles_are_accepted(s in "[A-Za-z0-9_.:-]{1,64}") {
            prop_assert!(Role::parse(&s).is_ok());
        }
    }
}
