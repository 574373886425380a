//! Invite links: what an app may attach to one, how long it lives, and
//! what its state is. An invite is a login whose email invites rather than
//! signs in: the same single-use token, allowlist, policy and send limits,
//! plus server-side metadata that only `verify` returns.

use serde_json::{Map, Value};

use crate::Timestamp;
use crate::login::VerifyFailure;

/// How long an invite lives when the app does not say: 7 days.
pub const INVITE_TTL_DEFAULT_SECONDS: i64 = 7 * 24 * 60 * 60;
/// The longest an invite may live: 7 days.
pub const INVITE_TTL_MAX_SECONDS: i64 = INVITE_TTL_DEFAULT_SECONDS;
/// The shortest: a minute, as for links.
pub const INVITE_TTL_MIN_SECONDS: i64 = 60;
/// The largest metadata, as compact JSON.
pub const METADATA_MAX_BYTES: usize = 4096;
/// The longest `invitedBy`, in characters.
pub const INVITED_BY_MAX_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("metadata must be a JSON object")]
    MetadataNotAnObject,
    #[error("metadata is {0} bytes as JSON; at most 4096 are kept")]
    MetadataTooLarge(usize),
    #[error("expiresIn must be between 60 and 604800 seconds (7 days)")]
    Expiry,
    #[error("invitedBy must be 1 to 200 characters, without control characters")]
    InvitedBy,
}

/// An invite's metadata: a JSON object of at most [`METADATA_MAX_BYTES`]
/// as compact JSON, kept on the server and returned only by `verify`. Its
/// `Debug` does not show it: it may be personal.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteMetadata(String);

impl std::fmt::Debug for InviteMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InviteMetadata({} bytes)", self.0.len())
    }
}

impl InviteMetadata {
    pub fn parse(value: &Value) -> Result<Self, InviteError> {
        let Value::Object(_) = value else { return Err(InviteError::MetadataNotAnObject) };
        // A `Value` always serialises; compact, so whitespace costs nothing.
        let json = serde_json::to_string(value).map_err(|_| InviteError::MetadataNotAnObject)?;
        if json.len() > METADATA_MAX_BYTES {
            return Err(InviteError::MetadataTooLarge(json.len()));
        }
        Ok(Self(json))
    }

    /// As stored: our own compact JSON.
    pub fn from_trusted(json: String) -> Self {
        Self(json)
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The object, for a response. Stored metadata that is not an object
    /// (it cannot be: it was checked on the way in) reads as empty.
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Who sent an invite, as the app names them (shown in the email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitedBy(String);

impl InvitedBy {
    pub fn parse(s: &str) -> Result<Self, InviteError> {
        let trimmed = s.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > INVITED_BY_MAX_CHARS || trimmed.chars().any(char::is_control) {
            return Err(InviteError::InvitedBy);
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

/// An invite's lifetime in seconds, [`INVITE_TTL_DEFAULT_SECONDS`] unless given.
pub fn invite_ttl(expires_in: Option<i64>) -> Result<i64, InviteError> {
    match expires_in {
        None => Ok(INVITE_TTL_DEFAULT_SECONDS),
        Some(seconds) if (INVITE_TTL_MIN_SECONDS..=INVITE_TTL_MAX_SECONDS).contains(&seconds) => Ok(seconds),
        Some(_) => Err(InviteError::Expiry),
    }
}

/// The state of an invite as `GET /invites` shows it and filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InviteStatus {
    Pending,
    Accepted,
    Expired,
    Revoked,
}

impl InviteStatus {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Accepted, Self::Expired, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The status of an invite with these times at `now`: accepted and
    /// revoked are final (an accepted invite cannot be revoked, nor a
    /// revoked one accepted); otherwise it is expired from `expires_at` on.
    pub fn of(
        accepted_at: Option<Timestamp>,
        revoked_at: Option<Timestamp>,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        match (accepted_at, revoked_at) {
            (Some(_), _) => Self::Accepted,
            (None, Some(_)) => Self::Revoked,
            (None, None) if now >= expires_at => Self::Expired,
            (None, None) => Self::Pending,
        }
    }
}

/// Why an invite's token cannot be used now, if it cannot: a revoked
/// invite answers `token_revoked` whatever else is true of it.
pub fn invite_refusal(
    accepted_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    expires_at: Timestamp,
    now: Timestamp,
) -> Option<VerifyFailure> {
    if revoked_at.is_some() {
        return Some(VerifyFailure::Revoked);
    }
    match InviteStatus::of(accepted_at, None, expires_at, now) {
        InviteStatus::Accepted => accepted_at.map(|used_at| VerifyFailure::Used { used_at }),
        InviteStatus::Expired => Some(VerifyFailure::Expired { expired_at: expires_at }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_is_an_object_of_at_most_4_kib() {
        assert!(InviteMetadata::parse(&json!({ "plan": "team", "seats": 5 })).is_ok());
        assert_eq!(InviteMetadata::parse(&json!(["a"])), Err(InviteError::MetadataNotAnObject));
        assert_eq!(InviteMetadata::parse(&json!("text")), Err(InviteError::MetadataNotAnObject));
        assert_eq!(InviteMetadata::parse(&Value::Null), Err(InviteError::MetadataNotAnObject));
        // {"k":"…"} is 8 bytes plus the value: 4088 fit exactly, 4089 do not.
        let fits = json!({ "k": "x".repeat(4088) });
        assert_eq!(InviteMetadata::parse(&fits).map(|m| m.as_json().len()), Ok(4096));
        let over = json!({ "k": "x".repeat(4089) });
        assert_eq!(InviteMetadata::parse(&over), Err(InviteError::MetadataTooLarge(4097)));
        let shown = format!("{:?}", InviteMetadata::parse(&json!({ "secret": "hunter2" })));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn invites_live_up_to_seven_days() {
        assert_eq!(invite_ttl(None), Ok(604_800));
        assert_eq!(invite_ttl(Some(60)), Ok(60));
        assert_eq!(invite_ttl(Some(604_800)), Ok(604_800));
        for refused in [0, 59, 604_801, -1] {
            assert_eq!(invite_ttl(Some(refused)), Err(InviteError::Expiry), "{refused}");
        }
    }

    #[test]
    fn invited_by_is_a_short_line() {
        assert_eq!(InvitedBy::parse("  Ada Lovelace ").map(InvitedBy::into_string), Ok("Ada Lovelace".into()));
        for refused in ["", "   ", "Ada\nBob", "tab\there"] {
            assert_eq!(InvitedBy::parse(refused), Err(InviteError::InvitedBy), "{refused:?}");
        }
        assert!(InvitedBy::parse(&"é".repeat(200)).is_ok());
        assert!(InvitedBy::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn an_invites_state_follows_its_times() {
        let (t, later) = (Timestamp(1_000), Timestamp(2_000));
        assert_eq!(InviteStatus::of(None, None, later, t), InviteStatus::Pending);
        assert_eq!(InviteStatus::of(None, None, later, later), InviteStatus::Expired);
        assert_eq!(InviteStatus::of(Some(t), None, later, Timestamp(9_000)), InviteStatus::Accepted);
        assert_eq!(InviteStatus::of(None, Some(t), later, t), InviteStatus::Revoked);
        assert_eq!(invite_refusal(None, None, later, t), None);
        assert_eq!(invite_refusal(None, Some(t), later, Timestamp(9_000)), Some(VerifyFailure::Revoked));
        assert_eq!(invite_refusal(Some(t), None, later, t), Some(VerifyFailure::Used { used_at: t }));
        assert_eq!(invite_refusal(None, None, later, later), Some(VerifyFailure::Expired { expired_at: later }));
        for status in InviteStatus::ALL {
            assert_eq!(InviteStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(InviteStatus::parse("PENDING"), None);
    }

    proptest! {
        /// Any object whose compact JSON fits is kept exactly; any that does
        /// not is refused with its size.
        #[test]
        fn metadata_limits_hold_for_any_object(
            entries in proptest::collection::btree_map("[a-z]{1,12}", "\\PC{0,300}", 0..30)
        ) {
            let value = Value::Object(entries.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
            let size = serde_json::to_string(&value).map(|s| s.len()).unwrap_or_default();
            match InviteMetadata::parse(&value) {
                Ok(kept) => {
                    prop_assert!(size <= METADATA_MAX_BYTES);
                    prop_assert_eq!(Value::Object(kept.to_object()), value);
                }
                Err(e) => prop_assert_eq!(e, InviteError::MetadataTooLarge(size)),
            }
        }
    }
}
