//! passgate's domain: everything that can be decided without touching the
//! outside world. Email addresses, redirect URLs, tokens, codes, PKCE, ids,
//! project policy, JWT signing and sealing secrets at rest live here.
//!
//! What does not live here: I/O of any kind (database, network, files, the
//! system clock), async code, HTTP. Randomness is the one exception: secrets
//! are drawn straight from the OS CSPRNG (see [`random`]), because a domain
//! type that could be built from a weaker source would be a trap.

pub mod apikey;
pub mod client;
pub mod code;
pub mod credential;
pub mod duration;
pub mod email;
pub mod events;
pub mod ids;
pub mod invite;
pub mod jwt;
pub mod limits;
pub mod login;
pub mod organization;
pub mod otp;
pub mod pkce;
pub mod policy;
pub mod random;
pub mod redirect;
pub mod secret;
pub mod stamp;
pub mod time;
pub mod token;
pub mod webhook;

pub use email::EmailAddress;
pub use events::EventKind;
pub use ids::{
    ApiKeyId, EmailId, EventId, IdKind, InviteId, LoginId, OrganizationId, OtpId, ProjectId, SessionId, UserId,
    WebhookId,
};
pub use time::{Clock, ManualClock, Timestamp};

/// Compares two byte strings in constant time (for equal lengths).
///
/// Every comparison of a secret, or of a value derived from one, goes
/// through here so that the rule has one home.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256 of `data`: how link tokens and API keys are kept at rest.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
