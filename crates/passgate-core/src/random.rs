//! The one source of secrets: the operating system's CSPRNG.

/// Alphabet of link tokens and API keys.
pub const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fills `buf` from the OS CSPRNG.
///
/// Panics if the OS cannot provide randomness: there is nothing safe to do
/// without it, and returning a weaker value would be worse than stopping.
pub fn fill(buf: &mut [u8]) {
    #[expect(clippy::expect_used, reason = "no safe fallback exists when the OS CSPRNG fails")]
    getrandom::fill(buf).expect("the OS CSPRNG is unavailable");
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

/// A string of `len` characters drawn uniformly from `alphabet`.
///
/// Rejection sampling keeps the distribution uniform: bytes at or above the
/// largest multiple of the alphabet size are thrown away instead of folded.
pub fn string_from(alphabet: &[u8], len: usize) -> String {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut pool = [0u8; 64];
    while out.len() < len {
        fill(&mut pool);
        for &b in &pool {
            if (b as usize) < limit {
                out.push(char::from(alphabet[b as usize % alphabet.len()]));
                if out.len() == len {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_use_only_the_alphabet_and_have_the_length() {
        let s = string_from(b"ab", 100);
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| b == b'a' || b == b'b'));
        assert!(s.contains('a') && s.contains('b'));
    }

    #[test]
    fn digits_are_roughly_uniform() {
        let s = string_from(b"0123456789", 100_000);
        for d in b'0'..=b'9' {
            let n = s.bytes().filter(|&b| b == d).count();
            assert!((9_000..11_000).contains(&n), "digit {} drawn {n} times", d as char);
        }
    }
}
