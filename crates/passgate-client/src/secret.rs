//! The project's secret key, in a type that never shows it.

use std::fmt;

/// A project secret key (`sk_live_…` or `sk_test_…`).
///
/// Its `Debug` and `Display` print `[REDACTED]`, so a client or a
/// configuration struct that reaches a log through `{:?}` shows no key.
/// The bytes are read only to build the `Authorization` header.
///
/// ```
/// let key = passgate_client::SecretKey::new("sk_test_abc");
/// assert_eq!(format!("{key:?}"), "SecretKey([REDACTED])");
/// ```
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wraps a key, trimmed of surrounding whitespace (a key pasted from
    /// a terminal often ends in a newline).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        Self(key.trim().to_string())
    }

    /// The key itself, for the `Authorization` header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_or_display() {
        let key = SecretKey::new(" sk_test_SuperSecret123\n");
        assert_eq!(key.expose(), "sk_test_SuperSecret123");
        for shown in [format!("{key:?}"), format!("{key}"), format!("{:#?}", Some(&key))] {
            assert!(!shown.contains("SuperSecret"), "{shown}");
        }
    }
}
