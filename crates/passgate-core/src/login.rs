//! What a login attempt is and how its verification is decided: the rules
//! every storage backend applies to the rows it read, written once so that
//! SQLite and PostgreSQL cannot drift apart. A backend reads, calls these,
//! and writes what they decided; it never decides on its own.

use crate::Timestamp;
use crate::constant_time_eq;

/// How a user proved control of their address (the JWT's `amr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    EmailLink,
    EmailCode,
}

impl AuthMethod {
    pub fn amr(self) -> &'static str {
        match self {
            Self::EmailLink => "email_link",
            Self::EmailCode => "email_otp",
        }
    }

    /// The method an `amr` value names, as stored on events.
    pub fn from_amr(amr: &str) -> Option<Self> {
        match amr {
            "email_link" => Some(Self::EmailLink),
            "email_otp" => Some(Self::EmailCode),
            _ => None,
        }
    }
}

/// Why a verify was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// No such token (or login) in this project.
    Invalid,
    Expired {
        expired_at: Timestamp,
    },
    Used {
        used_at: Timestamp,
    },
    Burned,
    /// PKCE verifier missing or wrong; the token is not consumed.
    VerifierMismatch,
    /// Wrong fallback code, or the login has none.
    CodeInvalid,
    /// Too many wrong codes for this address in a row (across all its
    /// codes): none is checked until `until`, not even the right one.
    CodesBlocked {
        until: Timestamp,
    },
    /// An invite's token, after the app revoked the invite.
    Revoked,
}

impl VerifyFailure {
    /// One of each kind (times zeroed), for closed label sets.
    pub const KINDS: [VerifyFailure; 8] = [
        Self::Invalid,
        Self::Expired { expired_at: Timestamp(0) },
        Self::Used { used_at: Timestamp(0) },
        Self::Burned,
        Self::VerifierMismatch,
        Self::CodeInvalid,
        Self::CodesBlocked { until: Timestamp(0) },
        Self::Revoked,
    ];

    /// The reason recorded on `auth.failed` events (and the API error code).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "token_invalid",
            Self::Expired { .. } => "token_expired",
            Self::Used { .. } => "token_used",
            Self::Burned => "token_burned",
            Self::VerifierMismatch => "code_verifier_mismatch",
            Self::CodeInvalid => "code_invalid",
            Self::CodesBlocked { .. } => "codes_blocked",
            Self::Revoked => "token_revoked",
        }
    }
}

/// The state of a login attempt as `GET /auth/logins/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    Pending,
    Verified,
    Expired,
    Burned,
}

impl LoginStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Expired => "expired",
            Self::Burned => "burned",
        }
    }

    /// The status of a login with these times at `now`: used wins over
    /// burned, burned over expired.
    pub fn of(used_at: Option<Timestamp>, burned_at: Option<Timestamp>, expires_at: Timestamp, now: Timestamp) -> Self {
        match closed_login(used_at, burned_at, expires_at, now) {
            Some(VerifyFailure::Used { .. }) => Self::Verified,
            Some(VerifyFailure::Burned) => Self::Burned,
            Some(_) => Self::Expired,
            None => Self::Pending,
        }
    }
}

/// Why a login can no longer be consumed, whatever was presented: used,
/// burned or expired, in that order; `None` while it is still open.
pub fn closed_login(
    used_at: Option<Timestamp>,
    burned_at: Option<Timestamp>,
    expires_at: Timestamp,
    now: Timestamp,
) -> Option<VerifyFailure> {
    if let Some(used_at) = used_at {
        Some(VerifyFailure::Used { used_at })
    } else if burned_at.is_some() {
        Some(VerifyFailure::Burned)
    } else if expires_at <= now {
        Some(VerifyFailure::Expired { expired_at: expires_at })
    } else {
        None
    }
}

/// What a backend must do about a verify that did not consume its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Refuse with this failure; nothing else changes.
    Refuse(VerifyFailure),
    /// The PKCE challenge was not answered: count a verifier failure (which
    /// burns the login at [`MAX_VERIFIER_FAILURES`](crate::limits::MAX_VERIFIER_FAILURES)),
    /// then refuse with [`VerifyFailure::VerifierMismatch`].
    CountVerifierFailure,
    /// A wrong fallback code: count a code failure on the login (which
    /// burns it at [`MAX_CODE_FAILURES`](crate::limits::MAX_CODE_FAILURES))
    /// and on its address's budget (see [`crate::limits::code_block_until`]),
    /// then refuse with [`VerifyFailure::CodeInvalid`].
    CountCodeFailure,
}

impl Refusal {
    /// The failures it counts, as (verifier, code) increments; `None` when
    /// it counts nothing.
    pub fn counted(self) -> Option<(i64, i64)> {
        match self {
            Self::Refuse(_) => None,
            Self::CountVerifierFailure => Some((1, 0)),
            Self::CountCodeFailure => Some((0, 1)),
        }
    }

    /// The failure the caller is answered with.
    pub fn failure(self) -> VerifyFailure {
        match self {
            Self::Refuse(failure) => failure,
            Self::CountVerifierFailure => VerifyFailure::VerifierMismatch,
            Self::CountCodeFailure => VerifyFailure::CodeInvalid,
        }
    }
}

/// A token's conditional `UPDATE` consumed nothing, and this is the login
/// the token names (if any): why. A login that is still open was refused
/// only for its PKCE challenge.
pub fn token_refusal(login: Option<(Option<Timestamp>, Option<Timestamp>, Timestamp)>, now: Timestamp) -> Refusal {
    match login {
        None => Refusal::Refuse(VerifyFailure::Invalid),
        Some((used_at, burned_at, expires_at)) => match closed_login(used_at, burned_at, expires_at, now) {
            Some(closed) => Refusal::Refuse(closed),
            None => Refusal::CountVerifierFailure,
        },
    }
}

/// A login as a verify by code reads it.
#[derive(Debug, Clone, Copy)]
pub struct CodeLogin<'a> {
    pub used_at: Option<Timestamp>,
    pub burned_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// The stored keyed hash of its fallback code, if it has one.
    pub code_hash: Option<&'a [u8]>,
    /// Its PKCE challenge, if it has one.
    pub code_challenge: Option<&'a str>,
    /// Until when codes for the login's address are refused, if they are.
    pub codes_blocked_until: Option<Timestamp>,
}

/// Decides a verify by code: `Ok(())` means consume the login (still by a
/// conditional `UPDATE`, which decides a race).
///
/// The order keeps what a guesser learns to nothing: while the address's
/// codes are blocked, nothing is compared; then the code is compared
/// (every candidate hash in constant time, without stopping at the first
/// match), and only a right code learns whether the login is used, burned
/// or expired, or that its PKCE challenge is unanswered.
pub fn decide_code(
    login: CodeLogin<'_>,
    code_hash_candidates: &[[u8; 32]],
    verifier_challenge: Option<&str>,
    now: Timestamp,
) -> Result<(), Refusal> {
    if let Some(until) = login.codes_blocked_until.filter(|until| *until > now) {
        return Err(Refusal::Refuse(VerifyFailure::CodesBlocked { until }));
    }
    let matched = login.code_hash.is_some_and(|stored| {
        code_hash_candidates.iter().fold(false, |acc, candidate| acc | constant_time_eq(candidate, stored))
    });
    if !matched {
        return Err(Refusal::CountCodeFailure);
    }
    if let Some(closed) = closed_login(login.used_at, login.burned_at, login.expires_at, now) {
        return Err(Refusal::Refuse(closed));
    }
    if !challenge_answered(login.code_challenge, verifier_challenge) {
        return Err(Refusal::CountVerifierFailure);
    }
    Ok(())
}

/// Whether a presented verifier's challenge answers the login's (a login
/// without one needs none), in constant time.
pub fn challenge_answered(stored: Option<&str>, presented: Option<&str>) -> bool {
    match (stored, presented) {
        (None, _) => true,
        (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
        (Some(_), None) => false,
    }
}

/// The failure of a verify whose decision was to consume, but whose
/// conditional `UPDATE` matched nothing: another verify won the race. The
/// login as it stands now says how.
pub fn lost_race(used_at: Option<Timestamp>) -> VerifyFailure {
    used_at.map_or(VerifyFailure::Burned, |used_at| VerifyFailure::Used { used_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(10_000);

    fn open_login<'a>(code_hash: Option<&'a [u8]>, challenge: Option<&'a str>) -> CodeLogin<'a> {
        CodeLogin {
            used_at: None,
            burned_at: None,
            expires_at: Timestamp(20_000),
            code_hash,
            code_challenge: challenge,
            codes_blocked_until: None,
        }
    }

    #[test]
    fn closed_logins_are_used_then_burned_then_expired() {
        let (used, burned) = (Some(Timestamp(5)), Some(Timestamp(6)));
        assert_eq!(closed_login(used, burned, Timestamp(1), NOW), Some(VerifyFailure::Used { used_at: Timestamp(5) }));
        assert_eq!(closed_login(None, burned, Timestamp(1), NOW), Some(VerifyFailure::Burned));
        assert_eq!(closed_login(None, None, NOW, NOW), Some(VerifyFailure::Expired { expired_at: NOW }));
        assert_eq!(closed_login(None, None, NOW.plus_millis(1), NOW), None);
        assert_eq!(LoginStatus::of(used, burned, Timestamp(1), NOW), LoginStatus::Verified);
        assert_eq!(LoginStatus::of(None, burned, Timestamp(1), NOW), LoginStatus::Burned);
        assert_eq!(LoginStatus::of(None, None, NOW, NOW), LoginStatus::Expired);
        assert_eq!(LoginStatus::of(None, None, Timestamp(20_000), NOW), LoginStatus::Pending);
    }

    #[test]
    fn a_token_that_consumed_nothing_is_unknown_closed_or_unanswered() {
        assert_eq!(token_refusal(None, NOW), Refusal::Refuse(VerifyFailure::Invalid));
        assert_eq!(
            token_refusal(Some((None, Some(Timestamp(1)), Timestamp(20_000))), NOW).failure(),
            VerifyFailure::Burned
        );
        assert_eq!(token_refusal(Some((None, None, Timestamp(20_000))), NOW), Refusal::CountVerifierFailure);
    }

    #[test]
    fn codes_are_decided_in_order_blocked_wrong_closed_unanswered() {
        let right = [7u8; 32];
        let candidates = [[1u8; 32], right];
        let mut blocked = open_login(Some(&right), None);
        blocked.codes_blocked_until = Some(NOW.plus_millis(1));
        assert_eq!(
            decide_code(blocked, &candidates, None, NOW),
            Err(Refusal::Refuse(VerifyFailure::CodesBlocked { until: NOW.plus_millis(1) })),
            "blocked: not even the right code is compared"
        );
        blocked.codes_blocked_until = Some(NOW);
        assert_eq!(decide_code(blocked, &candidates, None, NOW), Ok(()), "the block has ended");
        let mut closed = open_login(Some(&right), None);
        closed.used_at = Some(Timestamp(3));
        assert_eq!(
            decide_code(closed, &candidates, None, NOW),
            Err(Refusal::Refuse(VerifyFailure::Used { used_at: Timestamp(3) })),
            "the right code learns the login is used"
        );
        closed.code_hash = Some(&[9; 32]);
        assert_eq!(
            decide_code(closed, &candidates, None, NOW),
            Err(Refusal::CountCodeFailure),
            "a wrong one learns nothing"
        );
        assert_eq!(decide_code(open_login(None, None), &candidates, None, NOW), Err(Refusal::CountCodeFailure));
        assert_eq!(
            decide_code(open_login(Some(&[9; 32]), None), &candidates, None, NOW),
            Err(Refusal::CountCodeFailure)
        );
        assert_eq!(
            decide_code(open_login(Some(&right), Some("c")), &candidates, None, NOW),
            Err(Refusal::CountVerifierFailure)
        );
        assert_eq!(
            decide_code(open_login(Some(&right), Some("c")), &candidates, Some("d"), NOW),
            Err(Refusal::CountVerifierFailure)
        );
        assert_eq!(decide_code(open_login(Some(&right), Some("c")), &candidates, Some("c"), NOW), Ok(()));
        assert_eq!(decide_code(open_login(Some(&right), None), &candidates, Some("x"), NOW), Ok(()));
    }

    #[test]
    fn a_lost_race_reports_the_winner() {
        assert_eq!(lost_race(Some(Timestamp(4))), VerifyFailure::Used { used_at: Timestamp(4) });
        assert_eq!(lost_race(None), VerifyFailure::Burned);
    }
}
