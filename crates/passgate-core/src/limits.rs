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
/// Per end-user IP (when the app passes `ipAddress`): starts per minute.
pub const PER_IP_STARTS_PER_MINUTE: i64 = 30;

/// PKCE mismatches that burn a link.
pub const MAX_VERIFIER_FAILURES: i64 = 5;
/// Wrong fallback codes that burn a link (code and token alike).
pub const MAX_CODE_FAILURES: i64 = 3;

/// Lifetime of a result JWT, in seconds.
pub const JWT_TTL_SECONDS: i64 = 5 * 60;

/// How long an `Idempotency-Key` is remembered, in seconds.
pub const IDEMPOTENCY_WINDOW_SECONDS: i64 = 24 * 60 * 60;

/// Longest `state` a caller may attach to a login.
pub const MAX_STATE_LEN: usize = 512;
