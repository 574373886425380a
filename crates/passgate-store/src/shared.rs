//! What every backend needs that is not SQL: encoding list columns, checking
//! hashes read back, deciding which send limit a start reached, and the
//! shapes of the events and outbox updates each backend writes. Each backend
//! keeps its own queries; the decisions about what was read live here and
//! in `passgate_core::login`, so that the backends cannot drift apart.

use passgate_core::limits::{LimitKind, project_minute_limited, retry_after};
use passgate_core::login::VerifyFailure;
use passgate_core::{EmailId, EventKind, LoginId, OtpId, ProjectId, Timestamp};

use crate::{
    AuthMethod, ClaimedEmail, DeliveryResult, NewEvent, NewLogin, NewOtp, OtpFailure, OtpLimits, SendLimits,
    StoreError, StoreResult,
};

/// A list setting as stored: a JSON array of strings. Fails rather than
/// store anything else: an empty list would mean "no restriction" for the
/// allowed domains and addresses.
pub fn to_json(list: &[String]) -> StoreResult<String> {
    serde_json::to_string(list).map_err(|e| StoreError::Corrupt(format!("list setting: {e}")))
}

/// A stored list setting. A column that does not parse is corrupt data and
/// an error, never an empty list.
pub fn from_json(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

/// A stored hash, checked to be 32 bytes.
pub fn hash32(bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("hash is not 32 bytes".into()))
}

/// An email as a claim read it back. A queued email always has its sealed
/// content (it is cleared only once the email is settled): one without is
/// corrupt data.
pub fn claimed_email(
    id: String,
    project_id: String,
    login_id: Option<String>,
    recipient: String,
    payload_sealed: Option<Vec<u8>>,
    attempts: i64,
    lease_until: Timestamp,
) -> StoreResult<ClaimedEmail> {
    Ok(ClaimedEmail {
        id: EmailId::from_trusted(id),
        project_id: ProjectId::from_trusted(project_id),
        login_id: login_id.map(LoginId::from_trusted),
        recipient,
        payload_sealed: payload_sealed.ok_or_else(|| StoreError::Corrupt("queued email without payload".into()))?,
        attempts,
        lease_until,
    })
}

/// What a start's limit probes found, read by a backend in one go: the
/// creation time of the `limit`-th most recent login to the recipient (and
/// from the IP address) inside its window, if the window is full, and the
/// project's send counters of this minute and the previous one.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitProbe {
    pub recipient_full: Option<i64>,
    pub project_current: i64,
    pub project_previous: i64,
    pub ip_full: Option<i64>,
}

/// The first limit a start reaches, in the contract's order (recipient,
/// project, IP address), and the seconds until it frees.
pub fn limit_reached(probe: LimitProbe, limits: SendLimits, now: Timestamp) -> Option<(LimitKind, i64)> {
    let now_ms = now.millis();
    if let Some(oldest) = probe.recipient_full {
        return Some((LimitKind::Recipient, retry_after(oldest, limits.per_recipient_window_seconds, now_ms)));
    }
    if let Some(retry) =
        project_minute_limited(probe.project_current, probe.project_previous, now_ms, limits.per_project_per_minute)
    {
        return Some((LimitKind::Project, retry));
    }
    probe.ip_full.map(|oldest| (LimitKind::IpAddress, retry_after(oldest, 60, now_ms)))
}

/// The event of a start: `auth.started`, or `invite.created` for the
/// login that carries an invite.
pub fn started_event(login: &NewLogin) -> NewEvent<'_> {
    let kind = if login.invite_id.is_some() { EventKind::InviteCreated } else { EventKind::AuthStarted };
    NewEvent {
        login_id: Some(&login.id),
        invite_id: login.invite_id.as_ref(),
        email: Some(&login.email),
        ip_address: login.ip_address.as_deref(),
        user_agent: login.user_agent.as_deref(),
        ..NewEvent::new(&login.project_id, kind, login.created_at)
    }
}

/// The `rate_limited` event of a start refused by `limit`.
pub fn rate_limited_event(login: &NewLogin, limit: LimitKind) -> NewEvent<'_> {
    NewEvent {
        email: Some(&login.email),
        reason: Some(limit.as_str()),
        ip_address: login.ip_address.as_deref(),
        user_agent: login.user_agent.as_deref(),
        ..NewEvent::new(&login.project_id, EventKind::RateLimited, login.created_at)
    }
}

/// The `auth.failed` event of a refused verify.
pub fn failed_event<'a>(
    project_id: &'a ProjectId,
    login_id: Option<&'a LoginId>,
    failure: VerifyFailure,
    now: Timestamp,
) -> NewEvent<'a> {
    NewEvent { login_id, reason: Some(failure.reason()), ..NewEvent::new(project_id, EventKind::AuthFailed, now) }
}

/// The event kinds a user's sign-in activity lists (`session/activity`),
/// as an SQL list: sign-ins (by link, code or invite) and session keys.
/// Failures are not listed: they name no user (a wrong code does not say
/// whose account it tried).
pub const ACTIVITY_KINDS_SQL: &str =
    "'auth.verified', 'otp.verified', 'invite.accepted', 'session.created', 'session.revoked'";

/// What an OTP send's limit probes found: until when the address's codes
/// are blocked (if they are), the creation time of the oldest send that
/// fills the address's window (if it is full), the expiry of the live code
/// that frees a place first (if all places are taken), and the project's
/// send counters of this minute and the previous one.
#[derive(Debug, Clone, Copy, Default)]
pub struct OtpProbe {
    pub blocked_until: Option<i64>,
    pub window_full: Option<i64>,
    pub live_full: Option<i64>,
    pub project_current: i64,
    pub project_previous: i64,
}

/// The first limit an OTP send reaches — a blocked address (S12), the
/// address's sends per window, its live codes, the project's minute — and
/// the seconds until it frees.
pub fn otp_limit_reached(probe: OtpProbe, limits: OtpLimits, now: Timestamp) -> Option<(LimitKind, i64)> {
    let now_ms = now.millis();
    if let Some(until) = probe.blocked_until.filter(|until| *until > now_ms) {
        return Some((LimitKind::CodesBlocked, ((until - now_ms + 999) / 1000).max(1)));
    }
    if let Some(oldest) = probe.window_full {
        return Some((LimitKind::Recipient, retry_after(oldest, limits.window_seconds, now_ms)));
    }
    if let Some(frees_at) = probe.live_full {
        return Some((LimitKind::LiveCodes, ((frees_at - now_ms + 999) / 1000).max(1)));
    }
    project_minute_limited(probe.project_current, probe.project_previous, now_ms, limits.per_project_per_minute)
        .map(|retry| (LimitKind::Project, retry))
}

/// The event of a stored OTP send.
pub fn otp_sent_event(otp: &NewOtp) -> NewEvent<'_> {
    NewEvent {
        otp_id: Some(&otp.id),
        email: Some(&otp.email),
        ip_address: otp.ip_address.as_deref(),
        user_agent: otp.user_agent.as_deref(),
        ..NewEvent::new(&otp.project_id, EventKind::OtpSent, otp.created_at)
    }
}

/// The `rate_limited` event of an OTP send refused by `limit`.
pub fn otp_rate_limited_event(otp: &NewOtp, limit: LimitKind) -> NewEvent<'_> {
    NewEvent {
        email: Some(&otp.email),
        reason: Some(limit.as_str()),
        ip_address: otp.ip_address.as_deref(),
        user_agent: otp.user_agent.as_deref(),
        ..NewEvent::new(&otp.project_id, EventKind::RateLimited, otp.created_at)
    }
}

/// The `otp.failed` event of a refused OTP verify.
pub fn otp_failed_event<'a>(
    project_id: &'a ProjectId,
    otp_id: Option<&'a OtpId>,
    failure: OtpFailure,
    now: Timestamp,
) -> NewEvent<'a> {
    NewEvent { otp_id, reason: Some(failure.reason()), ..NewEvent::new(project_id, EventKind::OtpFailed, now) }
}

/// A login just consumed by its conditional `UPDATE`, on its way to
/// finding or creating its user.
#[derive(Debug)]
pub struct Consumed {
    pub project_id: ProjectId,
    pub login_id: LoginId,
    pub email: String,
    pub state: Option<String>,
    pub method: AuthMethod,
}

/// What recording a delivery result writes to its outbox row, and the
/// event it records: one shape for the three outcomes, so each backend needs
/// one `UPDATE`.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryUpdate<'a> {
    pub status: &'static str,
    pub last_error: Option<&'a str>,
    /// When to try again (a retry only).
    pub next_attempt_at: Option<i64>,
    /// When the email was settled (sent or given up): its sealed content is
    /// cleared then.
    pub settled_at: Option<i64>,
    /// The event kind and reason to record, if any.
    pub event: Option<(EventKind, Option<&'a str>)>,
    pub at: Timestamp,
}

impl<'a> DeliveryUpdate<'a> {
    pub fn of(result: &'a DeliveryResult) -> Self {
        match result {
            DeliveryResult::Sent { at } => Self {
                status: "sent",
                last_error: None,
                next_attempt_at: None,
                settled_at: Some(at.millis()),
                event: Some((EventKind::EmailSent, None)),
                at: *at,
            },
            DeliveryResult::Retry { at, error, retry_at } => Self {
                status: "retrying",
                last_error: Some(error),
                next_attempt_at: Some(retry_at.millis()),
                settled_at: None,
                event: None,
                at: *at,
            },
            DeliveryResult::GaveUp { at, error } => Self {
                status: "failed",
                last_error: Some(error),
                next_attempt_at: None,
                settled_at: Some(at.millis()),
                event: Some((EventKind::EmailFailed, Some(error))),
                at: *at,
            },
        }
    }

    /// The event's kind as stored, if there is one.
    pub fn event_kind(&self) -> Option<&'static str> {
        self.event.map(|(kind, _)| kind.as_str())
    }

    /// The event's reason, if there is one.
    pub fn event_reason(&self) -> Option<&'a str> {
        self.event.and_then(|(_, reason)| reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_columns_round_trip_and_corruption_is_reported() {
        let list = vec!["a".to_string(), "b\"c".to_string()];
        let stored = to_json(&list).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_json(&stored).ok(), Some(list));
        assert!(matches!(from_json("not json"), Err(StoreError::Corrupt(_))));
        assert!(matches!(from_json("{\"a\":1}"), Err(StoreError::Corrupt(_))));
        assert!(matches!(hash32(vec![0; 31]), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn otp_limits_are_reached_block_window_live_project() {
        let limits = OtpLimits { sends_per_email: 3, window_seconds: 180, live_codes: 3, per_project_per_minute: 10 };
        let now = Timestamp(1_795_219_200_000 + 30_000);
        let ms = now.millis();
        let all = OtpProbe {
            blocked_until: Some(ms + 29_001),
            window_full: Some(ms - 60_000),
            live_full: Some(ms + 5_000),
            project_current: 10,
            project_previous: 0,
        };
        assert_eq!(otp_limit_reached(all, limits, now), Some((LimitKind::CodesBlocked, 30)));
        let window = OtpProbe { blocked_until: Some(ms), ..all };
        assert_eq!(otp_limit_reached(window, limits, now), Some((LimitKind::Recipient, 120)), "a block that ended");
        let live = OtpProbe { window_full: None, ..window };
        assert_eq!(otp_limit_reached(live, limits, now), Some((LimitKind::LiveCodes, 5)));
        let project = OtpProbe { live_full: None, ..live };
        assert_eq!(otp_limit_reached(project, limits, now), Some((LimitKind::Project, 30)));
        assert_eq!(otp_limit_reached(OtpProbe::default(), limits, now), None);
    }

    #[test]
    fn limits_are_reached_in_the_contract_s_order() {
        let limits = SendLimits {
            per_recipient: 5,
            per_recipient_window_seconds: 900,
            per_project_per_minute: 10,
            per_ip_per_minute: 30,
        };
        let now = Timestamp(1_795_219_200_000 + 30_000);
        let all = LimitProbe {
            recipient_full: Some(now.millis() - 60_000),
            project_current: 10,
            project_previous: 0,
            ip_full: Some(now.millis()),
        };
        assert_eq!(limit_reached(all, limits, now), Some((LimitKind::Recipient, 840)));
        let project = LimitProbe { recipient_full: None, ..all };
        assert_eq!(limit_reached(project, limits, now), Some((LimitKind::Project, 30)));
        let ip = LimitProbe { project_current: 0, ..project };
        assert_eq!(limit_reached(ip, limits, now), Some((LimitKind::IpAddress, 60)));
        assert_eq!(limit_reached(LimitProbe::default(), limits, now), None);
    }
}
