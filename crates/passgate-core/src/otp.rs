//! Email one-time codes: what a code is, how a typed one is read, and how
//! a verify is decided — the rules both storage backends apply to the rows
//! they read, written once.
//!
//! A code is 6–9 characters from the CSPRNG: digits, or the Crockford
//! Base32 alphabet (no I, L, O or U, so nothing reads as something else).
//! Codes are kept keyed-hashed under the server secret (SECURITY S3): even
//! the 45 bits of a 9-character alphanumeric code fall to enumeration, so a
//! plain hash would give them away with a database dump.

use secrecy::{ExposeSecret, SecretString};

use crate::constant_time_eq;
use crate::random;
use crate::time::Timestamp;

/// Digits, for the default codes.
pub const DIGITS: &[u8; 10] = b"0123456789";
/// Crockford's Base32 alphabet, for `alphanumeric` codes.
pub const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Code lengths the contract allows, and the default.
pub const OTP_LENGTH_MIN: u8 = 6;
pub const OTP_LENGTH_MAX: u8 = 9;
pub const OTP_LENGTH_DEFAULT: u8 = 6;

/// A code's lifetime bounds and default, in seconds.
pub const OTP_TTL_MIN_SECONDS: i64 = 60;
pub const OTP_TTL_MAX_SECONDS: i64 = 600;
pub const OTP_TTL_DEFAULT_SECONDS: i64 = 300;

/// Sends per address per window (the default of the project setting), and
/// the window.
pub const OTP_SENDS_PER_EMAIL: i64 = 3;
pub const OTP_SEND_WINDOW_SECONDS: i64 = 3 * 60;
/// Codes of one address that may be live (unused, unlocked, unexpired) at once.
pub const OTP_LIVE_CODES: i64 = 3;
/// Wrong codes that lock an `otpId` (SECURITY S11).
pub const MAX_OTP_FAILURES: i64 = 3;

/// How a code is drawn: its length and alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeShape {
    length: u8,
    alphanumeric: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpInputError {
    #[error("otpLength must be 6 to 9")]
    Length,
    #[error("expiresIn must be 60 to 600 seconds")]
    ExpiresIn,
    #[error("code must be 6 to 9 digits or letters (hyphens and spaces are ignored)")]
    Code,
    #[error("appName must be 1 to 128 characters without control characters")]
    AppName,
}

impl CodeShape {
    pub fn new(length: Option<u8>, alphanumeric: bool) -> Result<Self, OtpInputError> {
        let length = length.unwrap_or(OTP_LENGTH_DEFAULT);
        if !(OTP_LENGTH_MIN..=OTP_LENGTH_MAX).contains(&length) {
            return Err(OtpInputError::Length);
        }
        Ok(Self { length, alphanumeric })
    }

    pub fn length(self) -> u8 {
        self.length
    }

    pub fn alphanumeric(self) -> bool {
        self.alphanumeric
    }
}

/// A code's lifetime in seconds, checked against the contract's bounds.
pub fn otp_ttl(expires_in: Option<i64>) -> Result<i64, OtpInputError> {
    let seconds = expires_in.unwrap_or(OTP_TTL_DEFAULT_SECONDS);
    if (OTP_TTL_MIN_SECONDS..=OTP_TTL_MAX_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(OtpInputError::ExpiresIn)
    }
}

/// The name an OTP email shows for the app: 1–128 characters, no control
/// characters (it reaches a subject line).
pub fn app_name(text: &str) -> Result<String, OtpInputError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 128 || text.chars().any(char::is_control) {
        return Err(OtpInputError::AppName);
    }
    Ok(text.to_string())
}

/// A one-time code in clear: only ever in the email and in memory.
#[derive(Debug, Clone)]
pub struct OtpCode(SecretString);

impl OtpCode {
    /// A fresh code of `shape` from the CSPRNG.
    pub fn generate(shape: CodeShape) -> Self {
        let alphabet: &[u8] = if shape.alphanumeric { CROCKFORD } else { DIGITS };
        Self(SecretString::from(random::string_from(alphabet, usize::from(shape.length))))
    }

    /// What a user typed, normalised the Crockford way: hyphens and spaces
    /// dropped, letters upper-cased, `O` read as `0`, `I` and `L` as `1`.
    /// Digits are their own normal form, so one reading serves both kinds of
    /// code; what remains must be 6–9 characters of the alphabet.
    pub fn parse(typed: &str) -> Result<Self, OtpInputError> {
        if typed.len() > 64 {
            return Err(OtpInputError::Code);
        }
        let mut normal = String::with_capacity(OTP_LENGTH_MAX.into());
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                ' ' | '-' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !CROCKFORD.contains(&(c as u8)) {
                return Err(OtpInputError::Code);
            }
            normal.push(c);
        }
        let length = u8::try_from(normal.len()).map_err(|_| OtpInputError::Code)?;
        if !(OTP_LENGTH_MIN..=OTP_LENGTH_MAX).contains(&length) {
            return Err(OtpInputError::Code);
        }
        Ok(Self(SecretString::from(normal)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Why an OTP verify was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpFailure {
    /// No such `otpId` in this project, or a wrong code.
    Invalid,
    Expired {
        expired_at: Timestamp,
    },
    Used {
        used_at: Timestamp,
    },
    /// The `otpId` took 3 wrong codes, or its address is blocked after 10
    /// in a row (until `until`, when it is).
    Locked {
        until: Option<Timestamp>,
    },
    /// A `targetPublicKey` was given at send and another at verify.
    TargetMismatch,
}

impl OtpFailure {
    /// One of each kind (times zeroed), for closed label sets.
    pub const KINDS: [OtpFailure; 5] = [
        Self::Invalid,
        Self::Expired { expired_at: Timestamp(0) },
        Self::Used { used_at: Timestamp(0) },
        Self::Locked { until: None },
        Self::TargetMismatch,
    ];

    /// The reason on `otp.failed` events, and the API's error code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "otp_invalid",
            Self::Expired { .. } => "otp_expired",
            Self::Used { .. } => "otp_used",
            Self::Locked { .. } => "otp_locked",
            Self::TargetMismatch => "target_public_key_mismatch",
        }
    }
}

/// A code as a verify reads it.
#[derive(Debug, Clone, Copy)]
pub struct StoredOtp<'a> {
    pub code_hash: &'a [u8],
    pub failures: i64,
    pub used_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    /// The target key given at send (canonical: uncompressed hex), if any.
    pub target_public_key: Option<&'a str>,
    /// Until when codes of the address are refused, if they are (S12).
    pub codes_blocked_until: Option<Timestamp>,
}

/// What a backend must do about a verify that does not consume its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRefusal {
    /// Refuse with this failure; nothing else changes.
    Refuse(OtpFailure),
    /// A wrong code: count it on the code (the 3rd locks it) and on its
    /// address's budget (see [`crate::limits::code_block_until`]), then
    /// refuse with [`OtpFailure::Invalid`].
    CountFailure,
}

impl OtpRefusal {
    pub fn failure(self) -> OtpFailure {
        match self {
            Self::Refuse(failure) => failure,
            Self::CountFailure => OtpFailure::Invalid,
        }
    }
}

/// Decides a verify: `Ok(target)` means consume the code (by a conditional
/// `UPDATE`, which decides a race) and mint a session credential for
/// `target` if there is one — the key given at verify, else the one given
/// at send.
///
/// The order keeps what a guesser learns to nothing: a blocked address and
/// a locked code compare nothing (the right code is refused too, S11/S12);
/// a mismatched target key is refused before any comparison, so it counts
/// nothing and says nothing of the code; then every candidate hash is
/// compared in constant time, and only a right code learns that its code is
/// used or expired.
pub fn decide_otp<'a>(
    otp: StoredOtp<'a>,
    code_hash_candidates: &[[u8; 32]],
    target_at_verify: Option<&'a str>,
    now: Timestamp,
) -> Result<Option<&'a str>, OtpRefusal> {
    if let Some(until) = otp.codes_blocked_until.filter(|until| *until > now) {
        return Err(OtpRefusal::Refuse(OtpFailure::Locked { until: Some(until) }));
    }
    if otp.failures >= MAX_OTP_FAILURES {
        return Err(OtpRefusal::Refuse(OtpFailure::Locked { until: None }));
    }
    if let (Some(at_send), Some(at_verify)) = (otp.target_public_key, target_at_verify)
        && !constant_time_eq(at_send.as_bytes(), at_verify.as_bytes())
    {
        return Err(OtpRefusal::Refuse(OtpFailure::TargetMismatch));
    }
    let matched =
        code_hash_candidates.iter().fold(false, |acc, candidate| acc | constant_time_eq(candidate, otp.code_hash));
    if !matched {
        return Err(OtpRefusal::CountFailure);
    }
    if let Some(used_at) = otp.used_at {
        return Err(OtpRefusal::Refuse(OtpFailure::Used { used_at }));
    }
    if otp.expires_at <= now {
        return Err(OtpRefusal::Refuse(OtpFailure::Expired { expired_at: otp.expires_at }));
    }
    Ok(target_at_verify.or(otp.target_public_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(10_000);

    fn open(hash: &[u8]) -> StoredOtp<'_> {
        StoredOtp {
            code_hash: hash,
            failures: 0,
            used_at: None,
            expires_at: Timestamp(20_000),
            target_public_key: None,
            codes_blocked_until: None,
        }
    }

    #[test]
    fn codes_have_their_shape_and_come_from_their_alphabet() {
        for length in 6..=9 {
            let digits = OtpCode::generate(CodeShape::new(Some(length), false).unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(digits.expose().len(), usize::from(length));
            assert!(digits.expose().bytes().all(|b| b.is_ascii_digit()));
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let code = OtpCode::generate(CodeShape::new(Some(9), true).unwrap_or_else(|e| panic!("{e}")));
            assert!(code.expose().bytes().all(|b| CROCKFORD.contains(&b)));
            seen.extend(code.expose().bytes());
        }
        assert!(seen.len() > 28, "alphanumeric codes use the whole alphabet, saw {}", seen.len());
        assert!(!seen.iter().any(|b| b"ILOU".contains(b)));
        assert_eq!(CodeShape::new(Some(5), false), Err(OtpInputError::Length));
        assert_eq!(CodeShape::new(Some(10), true), Err(OtpInputError::Length));
        assert_eq!(CodeShape::new(None, false).map(CodeShape::length), Ok(6));
    }

    #[test]
    fn typed_codes_are_read_the_crockford_way() {
        let read = |s: &str| OtpCode::parse(s).map(|c| c.expose().to_string());
        assert_eq!(read("123456"), Ok("123456".into()));
        assert_eq!(read("123-456"), Ok("123456".into()));
        assert_eq!(read(" 12 34 56 "), Ok("123456".into()));
        assert_eq!(read("abc-def-ghj"), Ok("ABCDEFGHJ".into()));
        assert_eq!(read("o1l-Iab"), Ok("0111AB".into()));
        assert_eq!(read("12345"), Err(OtpInputError::Code));
        assert_eq!(read("1234567890"), Err(OtpInputError::Code));
        assert_eq!(read("12345U"), Err(OtpInputError::Code), "U is not in the alphabet");
        assert_eq!(read("١٢٣٤٥٦"), Err(OtpInputError::Code));
        assert_eq!(read(&"1".repeat(65)), Err(OtpInputError::Code));
    }

    #[test]
    fn lifetimes_and_app_names_are_bounded() {
        assert_eq!(otp_ttl(None), Ok(300));
        assert_eq!(otp_ttl(Some(60)), Ok(60));
        assert_eq!(otp_ttl(Some(600)), Ok(600));
        assert_eq!(otp_ttl(Some(59)), Err(OtpInputError::ExpiresIn));
        assert_eq!(otp_ttl(Some(601)), Err(OtpInputError::ExpiresIn));
        assert_eq!(app_name(" Acme "), Ok("Acme".into()));
        assert_eq!(app_name(""), Err(OtpInputError::AppName));
        assert_eq!(app_name("a\r\nBcc: x"), Err(OtpInputError::AppName));
        assert_eq!(app_name(&"é".repeat(128)).map(|s| s.chars().count()), Ok(128));
        assert_eq!(app_name(&"é".repeat(129)), Err(OtpInputError::AppName));
    }

    #[test]
    fn verifies_are_decided_blocked_locked_mismatched_wrong_used_expired() {
        let right = [7u8; 32];
        let candidates = [[1u8; 32], right];
        assert_eq!(decide_otp(open(&right), &candidates, None, NOW), Ok(None));

        let mut blocked = open(&right);
        blocked.codes_blocked_until = Some(NOW.plus_millis(1));
        assert_eq!(
            decide_otp(blocked, &candidates, None, NOW),
            Err(OtpRefusal::Refuse(OtpFailure::Locked { until: Some(NOW.plus_millis(1)) })),
            "a blocked address: not even the right code is compared"
        );
        blocked.codes_blocked_until = Some(NOW);
        assert_eq!(decide_otp(blocked, &candidates, None, NOW), Ok(None), "the block has ended");

        let mut locked = open(&right);
        locked.failures = MAX_OTP_FAILURES;
        assert_eq!(
            decide_otp(locked, &candidates, None, NOW),
            Err(OtpRefusal::Refuse(OtpFailure::Locked { until: None })),
            "a locked code refuses the right code"
        );
        locked.failures = MAX_OTP_FAILURES - 1;
        assert_eq!(decide_otp(locked, &candidates, None, NOW), Ok(None));

        let mut targeted = open(&right);
        targeted.target_public_key = Some("04aa");
        assert_eq!(decide_otp(targeted, &candidates, None, NOW), Ok(Some("04aa")), "the key given at send");
        assert_eq!(decide_otp(targeted, &candidates, Some("04aa"), NOW), Ok(Some("04aa")));
        assert_eq!(
            decide_otp(targeted, &[[0; 32]], Some("04bb"), NOW),
            Err(OtpRefusal::Refuse(OtpFailure::TargetMismatch)),
            "a mismatch is refused before the code is compared, and counts nothing"
        );
        assert_eq!(
            decide_otp(open(&right), &candidates, Some("04cc"), NOW),
            Ok(Some("04cc")),
            "the key given at verify"
        );

        assert_eq!(decide_otp(open(&[9; 32]), &candidates, None, NOW), Err(OtpRefusal::CountFailure));
        let mut used = open(&right);
        used.used_at = Some(Timestamp(3));
        assert_eq!(
            decide_otp(used, &candidates, None, NOW),
            Err(OtpRefusal::Refuse(OtpFailure::Used { used_at: Timestamp(3) }))
        );
        assert_eq!(
            decide_otp(used, &[[9; 32]], None, NOW),
            Err(OtpRefusal::CountFailure),
            "a wrong code learns nothing"
        );
        let mut expired = open(&right);
        expired.expires_at = NOW;
        assert_eq!(
            decide_otp(expired, &candidates, None, NOW),
            Err(OtpRefusal::Refuse(OtpFailure::Expired { expired_at: NOW }))
        );
        assert_eq!(OtpRefusal::CountFailure.failure(), OtpFailure::Invalid);
    }
}
