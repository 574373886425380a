//! Prefixed, opaque identifiers (`prj_…`, `lgn_…`, …), one type per kind.
//!
//! The body is a UUIDv7 in lower-case hex: time-ordered, so rows inserted
//! together sit together in B-tree indexes, and unguessable enough that an id
//! is never mistaken for a credential (ids are not secrets; keys are).
//!
//! Each kind has its own type ([`ProjectId`], [`UserId`], [`LoginId`], …) so
//! that a function taking a project and a login cannot be handed them the
//! other way round. An id from outside is [`parse`](ProjectId::parse)d, which
//! checks its shape, so a malformed one is a clean 404 before any query; an
//! id read back from our own storage is taken as it is
//! ([`from_trusted`](ProjectId::from_trusted)).

use std::fmt;

/// The kinds of identifiers passgate hands out, and their prefixes.
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
    Webhook,
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
            Self::Webhook => "whk",
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

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident => $kind:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const KIND: IdKind = IdKind::$kind;

            /// A fresh id.
            pub fn generate() -> Self {
                Self(IdKind::$kind.generate())
            }

            /// An id given by a caller, if it is shaped like one of this kind.
            pub fn parse(s: &str) -> Option<Self> {
                IdKind::$kind.matches(s).then(|| Self(s.to_string()))
            }

            /// An id from a source that only ever holds well-formed ids of
            /// this kind: our own storage, or a constant of ours.
            pub fn from_trusted(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// As its text. (No `Deserialize`: an id from outside is parsed.)
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )*};
}

typed_id! {
    /// A project (`prj_…`): everything else is scoped to one.
    ProjectId => Project;
    /// A user of a project (`usr_…`).
    UserId => User;
    /// One login attempt (`lgn_…`).
    LoginId => Login;
    /// A project's API key (`key_…`); the id, not the secret.
    ApiKeyId => ApiKey;
    /// A queued email (`eml_…`).
    EmailId => Email;
    /// A recorded event (`evt_…`).
    EventId => Event;
    /// An organization (`org_…`).
    OrganizationId => Organization;
    /// An invite (`inv_…`).
    InviteId => Invite;
    /// An emailed one-time code (`otp_…`).
    OtpId => Otp;
    /// A session key (`ses_…`).
    SessionId => Session;
    /// A webhook endpoint (`whk_…`).
    WebhookId => Webhook;
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

    #[test]
    fn typed_ids_parse_only_their_own_kind() {
        let login = LoginId::generate();
        assert!(login.as_str().starts_with("lgn_"));
        assert_eq!(LoginId::parse(login.as_str()), Some(login.clone()));
        assert_eq!(UserId::parse(login.as_str()), None);
        assert_eq!(ProjectId::parse("prj_dev").map(ProjectId::into_string).as_deref(), Some("prj_dev"));
        assert_eq!(WebhookId::generate().as_str().get(..4), Some("whk_"));
    }
}
