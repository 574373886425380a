//! The numbers of the contract, in one place.

/// Default and bounds of a project's link lifetime, in seconds.
pub const LINK_TTL_DEFAULT_SECONDS: i64 = 15 * 60;
pub const LINK_TTL_MIN_SECONDS: i64 = 60;
pub const LINK_TTL_MAX_SECONDS: i64 = 60 * 60;

/// Per recipient: this many link emails per window (default project setting).
pub const PER_RECIPIENT_EMAILS: i64 = 5;
pub const PER_RECIPIENT_WINDOW_SECONDS: i64 = 15 * 60;
/// Per project: emails per minute (default project setting).
pub const EMAILS_PER_MINUTE_DEFAULT: i64 = 600;
/// Per end-user IP (when the app passes `ipAddress`): starts per minute
/// (default project setting).
pub const PER_IP_STARTS_PER_MINUTE: i64 = 30;

/// Bounds an operator may set a project's limits to (the defaults are the
/// constants above, and `otp::OTP_SENDS_PER_EMAIL`). The windows stay fixed.
pub const PER_RECIPIENT_EMAILS_MIN: i64 = 1;
pub const PER_RECIPIENT_EMAILS_MAX: i64 = 1_000;
pub const PER_IP_STARTS_MIN: i64 = 1;
pub const PER_IP_STARTS_MAX: i64 = 100_000;
pub const OTP_SENDS_PER_EMAIL_MIN: i64 = 1;
pub const OTP_SENDS_PER_EMAIL_MAX: i64 = 100;
pub const EMAILS_PER_MINUTE_MIN: i64 = 1;
pub const EMAILS_PER_MINUTE_MAX: i64 = 1_000_000;

/// How long a project's events are kept (default project setting), in
/// seconds; 0 keeps them forever. Otherwise a day to ten years.
pub const EVENT_RETENTION_DEFAULT_SECONDS: i64 = 90 * 24 * 60 * 60;
// As short as a minute: a privacy-minded project may keep little, and a
// soak benchmark must reach its steady state within its run.
pub const EVENT_RETENTION_MIN_SECONDS: i64 = 60;
pub const EVENT_RETENTION_MAX_SECONDS: i64 = 3_650 * 24 * 60 * 60;

/// Whether a project's event retention is allowed: 0 (forever), or within
/// the bounds.
pub fn event_retention_allowed(seconds: i64) -> bool {
    seconds == 0 || (EVENT_RETENTION_MIN_SECONDS..=EVENT_RETENTION_MAX_SECONDS).contains(&seconds)
}

/// PKCE mismatches that burn a link.
pub const MAX_VERIFIER_FAILURES: i64 = 5;
/// Wrong fallback codes that burn a link (code and token alike).
pub const MAX_CODE_FAILURES: i64 = 3;

/// Wrong codes in a row, across every code of one address (link fallback
/// codes and, later, one-time codes alike), after which codes for that
/// address are refused for a while (SECURITY S12).
pub const CODE_FAILURES_BEFORE_BLOCK: i64 = 10;
/// The first block, doubled by every further wrong code up to the longest.
pub const CODE_BLOCK_FIRST_SECONDS: i64 = 30;
pub const CODE_BLOCK_LONGEST_SECONDS: i64 = 60 * 60;

/// When codes for an address become usable again after its `failures`-th
/// wrong code in a row at `now_ms`: `None` below the threshold; 30 s at it,
/// doubling with each further wrong code, an hour at the most.
pub fn code_block_until(failures: i64, now_ms: i64) -> Option<i64> {
    let beyond = failures - CODE_FAILURES_BEFORE_BLOCK;
    if beyond < 0 {
        return None;
    }
    let doublings = u32::try_from(beyond.min(16)).unwrap_or(16);
    let seconds = CODE_BLOCK_FIRST_SECONDS.saturating_mul(1 << doublings).min(CODE_BLOCK_LONGEST_SECONDS);
    Some(now_ms + seconds * 1000)
}

/// A session key's lifetime (`sessionExpiresIn`): bounds and default, in seconds.
pub const SESSION_TTL_MIN_SECONDS: i64 = 60;
pub const SESSION_TTL_MAX_SECONDS: i64 = 24 * 60 * 60;
pub const SESSION_TTL_DEFAULT_SECONDS: i64 = 15 * 60;
/// Live session keys per user; minting one more drops the oldest.
pub const MAX_LIVE_SESSIONS: i64 = 10;

/// A session key's lifetime from `sessionExpiresIn`, if within the bounds.
pub fn session_ttl(expires_in: Option<i64>) -> Option<i64> {
    let seconds = expires_in.unwrap_or(SESSION_TTL_DEFAULT_SECONDS);
    (SESSION_TTL_MIN_SECONDS..=SESSION_TTL_MAX_SECONDS).contains(&seconds).then_some(seconds)
}

/// Lifetime of a result JWT, in seconds.
pub const JWT_TTL_SECONDS: i64 = 5 * 60;

/// How long an `Idempotency-Key` is remembered, in seconds.
pub const IDEMPOTENCY_WINDOW_SECONDS: i64 = 24 * 60 * 60;

/// Which send limit refused a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Recipient,
    Project,
    IpAddress,
    /// One-time codes: the address already has as many live codes as allowed.
    LiveCodes,
    /// One-time codes: the address is blocked after wrong codes in a row (S12).
    CodesBlocked,
}

impl LimitKind {
    pub const ALL: [LimitKind; 5] =
        [Self::Recipient, Self::Project, Self::IpAddress, Self::LiveCodes, Self::CodesBlocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Project => "project",
            Self::IpAddress => "ip_address",
            Self::LiveCodes => "live_codes",
            Self::CodesBlocked => "codes_blocked",
        }
    }
}

/// Seconds until the oldest counted send leaves its window (at least 1).
pub fn retry_after(oldest_counted: i64, window_seconds: i64, now_ms: i64) -> i64 {
    let free_at = oldest_counted + window_seconds * 1000;
    ((free_at - now_ms + 999) / 1000).max(1)
}

/// The per-project "emails per minute" limit as a sliding minute, estimated
/// from two fixed one-minute counters (the sliding-window-counter method):
/// the previous minute's count weighs as much as that minute still overlaps
/// the last 60 seconds. Counting two rows instead of every send of the last
/// minute keeps the check O(1) however high a project's limit is set.
///
/// Returns `Some(retry_after_seconds)` when one more send would exceed
/// `limit`: the time until the current minute ends, when the estimate drops.
pub fn project_minute_limited(current: i64, previous: i64, now_ms: i64, limit: i64) -> Option<i64> {
    let into_minute = now_ms.rem_euclid(60_000);
    let estimate = current + previous * (60_000 - into_minute) / 60_000;
    (estimate >= limit).then(|| ((60_000 - into_minute + 999) / 1000).max(1))
}

/// The minute bucket a time falls in.
pub fn minute_bucket(now_ms: i64) -> i64 {
    now_ms.div_euclid(60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_blocked_after_ten_wrong_ones_for_a_doubling_while() {
        assert_eq!(code_block_until(9, 0), None);
        assert_eq!(code_block_until(10, 0), Some(30_000));
        assert_eq!(code_block_until(11, 0), Some(60_000));
        assert_eq!(code_block_until(14, 1_000), Some(1_000 + 480_000));
        assert_eq!(code_block_until(17, 0), Some(3_600_000), "an hour at the most");
        assert_eq!(code_block_until(1_000, 0), Some(3_600_000));
    }

    #[test]
    fn event_retention_is_forever_or_a_minute_to_ten_years() {
        assert!(event_retention_allowed(0));
        assert!(event_retention_allowed(EVENT_RETENTION_DEFAULT_SECONDS));
        assert!(event_retention_allowed(60));
        assert!(event_retention_allowed(3_650 * 86_400));
        assert!(!event_retention_allowed(59));
        assert!(!event_retention_allowed(3_651 * 86_400));
        assert!(!event_retention_allowed(-1));
    }

    #[test]
    fn session_lifetimes_are_a_minute_to_a_day() {
        assert_eq!(session_ttl(None), Some(900));
        assert_eq!(session_ttl(Some(60)), Some(60));
        assert_eq!(session_ttl(Some(86_400)), Some(86_400));
        assert_eq!(session_ttl(Some(59)), None);
        assert_eq!(session_ttl(Some(86_401)), None);
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let now = 10_000;
        assert_eq!(retry_after(0, 15, now), 5);
        assert_eq!(retry_after(0, 10, now), 1);
        assert_eq!(retry_after(1, 10, now), 1);
        assert_eq!(retry_after(500, 15, now), 6);
    }

    #[test]
    fn the_previous_minute_fades_out_as_the_current_one_passes() {
        let start = 1_795_219_200_000; // a minute boundary
        assert_eq!(project_minute_limited(2, 0, start, 3), None);
        assert_eq!(project_minute_limited(3, 0, start + 10_000, 3), Some(50));
        // Just into the next minute the previous one still counts almost fully…
        assert_eq!(project_minute_limited(1, 10, start + 60_001, 10), Some(60));
        assert_eq!(project_minute_limited(0, 10, start + 60_001, 10), None);
        // …and half a minute later only half of it.
        assert_eq!(project_minute_limited(4, 10, start + 90_000, 10), None);
        assert_eq!(project_minute_limited(5, 10, start + 90_000, 10), Some(30));
    }
}
