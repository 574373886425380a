//! Small inputs an app passes along about its end user and request: parsed
//! once at the edge into types that can only hold acceptable values, so the
//! layers behind never check them again.

use std::net::IpAddr;

/// Why an input was refused; the message names the field and is safe to
/// show to the caller (it never echoes the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

/// Longest user agent kept on a login and its events.
pub const MAX_USER_AGENT_LEN: usize = 512;
/// Longest `state` a caller may attach to a login.
pub const MAX_STATE_LEN: usize = 512;
/// Longest locale tag (BCP 47 allows 35 characters in practice).
pub const MAX_LOCALE_LEN: usize = 35;

/// Text of at most `max` characters with no control characters.
fn bounded_text(value: String, field: &str, max: usize) -> Result<String, InputError> {
    if value.chars().count() > max {
        return Err(InputError(format!("{field} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(InputError(format!("{field} contains control characters")));
    }
    Ok(value)
}

/// The end user's user agent as the app saw it (`userAgent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(String);

impl UserAgent {
    pub fn parse(value: String) -> Result<Self, InputError> {
        bounded_text(value, "userAgent", MAX_USER_AGENT_LEN).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An app's opaque value, handed back by verify (`state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState(String);

impl LoginState {
    pub fn parse(value: String) -> Result<Self, InputError> {
        bounded_text(value, "state", MAX_STATE_LEN).map(Self)
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The preferred language of an email, a BCP 47 tag such as `en` or `pt-BR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    pub fn parse(value: String) -> Result<Self, InputError> {
        let shaped = !value.is_empty()
            && value.len() <= MAX_LOCALE_LEN
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if shaped { Ok(Self(value)) } else { Err(InputError("locale must be a BCP 47 tag such as en or pt-BR".into())) }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The end user's IP address as the app saw it (`ipAddress`), in its
/// canonical form: an IPv4 address written in IPv6 (`::ffff:203.0.113.7`,
/// or the deprecated `::203.0.113.7`) is that IPv4 address, so it cannot
/// pass for another client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let addr = value
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| InputError("ipAddress is not an IPv4 or IPv6 address".into()))?;
        Ok(Self(canonical(addr)))
    }

    pub fn addr(self) -> IpAddr {
        self.0
    }

    /// The canonical text form, as events show it.
    pub fn to_text(self) -> String {
        self.0.to_string()
    }

    /// What the per-IP limit counts: an IPv4 address, or the /64 network
    /// of an IPv6 address (`2001:db8:1:2::/64`). One host usually holds a
    /// whole /64, so counting its addresses one by one would give it 2^64
    /// budgets.
    pub fn limit_key(self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(network))
            }
        }
    }
}

/// An IPv4 address carried in IPv6 (mapped `::ffff:a.b.c.d`, or compatible
/// `::a.b.c.d`, which is deprecated but still parsed) as the IPv4 address.
/// `::` and `::1` are IPv6's own unspecified and loopback addresses.
fn canonical(addr: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = addr else { return addr };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let compatible = u128::from(v6) >> 32 == 0 && u128::from(v6) > 1;
    match (compatible, v6.to_ipv4()) {
        (true, Some(v4)) => IpAddr::V4(v4),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_and_free_of_control_characters() {
        assert!(UserAgent::parse("curl/8".into()).is_ok());
        assert_eq!(
            UserAgent::parse("a".repeat(513)).err().map(|e| e.to_string()).as_deref(),
            Some("userAgent is longer than 512 characters")
        );
        assert_eq!(
            LoginState::parse("a\nb".into()).err().map(|e| e.to_string()).as_deref(),
            Some("state contains control characters")
        );
        assert!(LoginState::parse("é".repeat(512)).is_ok());
    }

    #[test]
    fn locales_are_tags() {
        assert!(Locale::parse("pt-BR".into()).is_ok());
        for bad in ["", "en_US", "e n", &"a".repeat(36)] {
            assert!(Locale::parse(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_addresses_are_canonical() {
        assert_eq!(ClientIp::parse(" 203.0.113.7 ").map(ClientIp::to_text), Ok("203.0.113.7".into()));
        assert_eq!(ClientIp::parse("2001:DB8::0001").map(ClientIp::to_text), Ok("2001:db8::1".into()));
        assert!(ClientIp::parse("not-an-ip").is_err());
    }

    /// An IPv4 client written in IPv6 is the same client, and every address
    /// of an IPv6 /64 counts as one.
    #[test]
    fn the_per_ip_limit_counts_ipv4_clients_and_ipv6_networks() {
        let key = |s: &str| ClientIp::parse(s).map(ClientIp::limit_key).unwrap_or_else(|e| panic!("{e}"));
        for same in ["203.0.113.7", "::ffff:203.0.113.7", "::FFFF:cb00:7107", "::203.0.113.7"] {
            assert_eq!(key(same), "203.0.113.7", "{same}");
        }
        assert_eq!(ClientIp::parse("::ffff:203.0.113.7").map(ClientIp::to_text), Ok("203.0.113.7".into()));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::1"), "::/64");
        assert_eq!(ClientIp::parse("::1").map(ClientIp::to_text), Ok("::1".into()));
    }
}
