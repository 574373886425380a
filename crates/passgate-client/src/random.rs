//! Secrets for the SDK (session ids, CSRF tokens, PKCE verifiers,
//! idempotency keys) come from the OS CSPRNG and nowhere else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` bytes from the OS CSPRNG.
///
/// Panics if the OS cannot provide randomness: there is nothing safe to do
/// without it, and a weaker value would be worse than stopping.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[expect(clippy::expect_used, reason = "no safe fallback exists when the OS CSPRNG fails")]
    getrandom::fill(&mut out).expect("the OS CSPRNG is unavailable");
    out
}

/// `N` random bytes as unpadded base64url (43 characters for 32 bytes).
pub(crate) fn token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<N>())
}
