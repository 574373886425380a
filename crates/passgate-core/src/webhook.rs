//! The pure parts of webhooks, in the format of the Standard Webhooks
//! specification (standardwebhooks.com), so a receiver can check our
//! deliveries with any of its libraries unchanged: the signed content is
//! `{msg_id}.{timestamp_seconds}.{body}`, the MAC is HMAC-SHA256 under the
//! secret's raw bytes, and the `webhook-signature` header carries one
//! `v1,<standard base64>` per secret, space separated. Secrets are shown to
//! developers as `whsec_` + standard base64 of their bytes.
//!
//! Also here: which endpoint URLs may be registered and which addresses may
//! never be dialled (the SSRF guard), and the retry schedule. Sending,
//! resolving names and the clock belong to the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::random;

/// How a secret is shown to developers, as the specification has it.
pub const SECRET_PREFIX: &str = "whsec_";
/// The specification's bounds on a symmetric secret: 192 to 512 bits.
const SECRET_LEN_MIN: usize = 24;
const SECRET_LEN_MAX: usize = 64;
/// What [`WebhookSecret::generate`] draws: 256 bits, the size of the MAC.
const SECRET_LEN_GENERATED: usize = 32;

/// An endpoint's signing secret. Its bytes are wiped when it is dropped,
/// and `Debug` never shows them.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A fresh secret from the CSPRNG.
    pub fn generate() -> Self {
        let bytes = Zeroizing::new(random::bytes::<SECRET_LEN_GENERATED>());
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// A secret from its stored bytes; `None` outside the 24–64 bytes the
    /// specification allows.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&bytes.len()).then(|| Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The raw bytes: what is stored (sealed) and what the MAC is keyed with.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as a developer pastes it into a receiver's library.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.as_bytes()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// `v1,<base64>`: the signature of one delivery under one secret.
///
/// `msg_id` must not contain a `.`: the signed content is joined with dots,
/// and an id that could hold one would let its bytes shift into the
/// timestamp's place (the specification's warning). Ours are generated ids.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    debug_assert!(!msg_id.contains('.'), "webhook message ids must not contain '.'");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one `v1,` signature per secret,
/// space separated. During a rotation the previous secret signs beside the
/// new one, so receivers that still hold the old secret keep verifying.
/// No secrets give an empty string.
pub fn signature_header(secrets: &[&WebhookSecret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| sign(secret, msg_id, timestamp_secs, body)).collect::<Vec<_>>().join(" ")
}

/// IPv4 ranges a delivery must never reach: not globally routable, or
/// routable only to something of ours or of our host's network.
const BLOCKED_V4: [(Ipv4Addr, u32); 14] = [
    // "This network", including the unspecified address 0.0.0.0, which
    // Linux dials as the local host.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // Carrier-grade NAT's shared space: the provider's side of the network.
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local, which holds the cloud metadata service 169.254.169.254.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (DS-Lite, NAT64 discovery, ...).
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation: TEST-NET-1.
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking.
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Documentation: TEST-NET-2 and TEST-NET-3.
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved, up to and including the broadcast address.
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 ranges a delivery must never reach. Addresses that carry an IPv4
/// address in the mapped or compatible form are judged by it instead (see
/// [`is_blocked_ip`]).
const BLOCKED_V6: [(Ipv6Addr, u32); 12] = [
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    // NAT64, well-known and local-use: a translator would carry the
    // delivery to whatever IPv4 address is embedded, private ones included.
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // Discard-only.
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    // Teredo and 6to4 tunnel to an embedded IPv4 address, too.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    // Unique local, which holds AWS's metadata service fd00:ec2::254.
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // Site-local: deprecated, but some stacks still route it internally.
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// Whether a webhook delivery must never dial `ip` (the SSRF guard):
/// unspecified, loopback, private, link-local (cloud metadata), shared,
/// benchmarking, documentation, multicast, reserved and tunnelling ranges.
///
/// An IPv6 address in the IPv4-mapped (`::ffff:a.b.c.d`) or
/// IPv4-compatible (`::a.b.c.d`) form is judged as its IPv4 address, since
/// that is what a dual-stack socket connects to: `::ffff:10.0.0.1` is
/// blocked, `::ffff:8.8.8.8` is not.
pub fn is_blocked_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => {
            if BLOCKED_V6.iter().any(|&(network, prefix)| in_v6_network(v6, network, prefix)) {
                return true;
            }
            // `to_ipv4` reads both the mapped and the compatible form.
            if let Some(v4) = v6.to_ipv4() {
                return is_blocked_v4(v4);
            }
            // Only global unicast (2000::/3) is dialled: what lies outside it
            // is reserved, unassigned or local, and none of it is a web server.
            !in_v6_network(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        }
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    BLOCKED_V4.iter().any(|&(network, prefix)| {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        u32::from(ip) & mask == u32::from(network) & mask
    })
}

fn in_v6_network(ip: Ipv6Addr, network: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// The longest webhook URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL was refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("the webhook URL is not an absolute URL")]
    NotAUrl,
    #[error("webhook URLs must use https")]
    NotHttps,
    #[error("webhook URLs must not contain a user name or password")]
    HasCredentials,
    #[error("webhook URLs must not contain a fragment (#...)")]
    HasFragment,
    #[error("the webhook URL has no host")]
    NoHost,
    #[error("webhook URLs must be at most 2048 bytes")]
    TooLong,
    #[error("webhook URLs must not point at localhost or a private, link-local or reserved address")]
    BlockedAddress,
}

/// A webhook URL that passed every check that needs no DNS. IP-literal
/// hosts are checked here; names are resolved and their addresses checked
/// at delivery, by the server's resolver, since a name's answer can change
/// after it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The host when it is an IP literal (brackets stripped), else `None`.
    pub fn host_ip(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }
}

/// Checks a webhook URL as it is registered.
///
/// `allow_private` is the operator's `PASSGATE_WEBHOOK_ALLOW_PRIVATE`, for
/// development and private deployments: it allows `http` and lifts the
/// address check. Credentials, fragments, length and host are checked
/// either way, and schemes other than http and https are always refused.
///
/// The URL is read the WHATWG way, as the delivering client will read it,
/// so numeric spellings such as `https://2130706433/` arrive here as the
/// IPv4 address they mean (127.0.0.1) and are judged as such.
pub fn parse_webhook_url(input: &str, allow_private: bool) -> Result<WebhookUrl, UrlRefusal> {
    if input.len() > MAX_URL_LEN {
        return Err(UrlRefusal::TooLong);
    }
    let url = url::Url::parse(input).map_err(|error| match error {
        url::ParseError::EmptyHost => UrlRefusal::NoHost,
        _ => UrlRefusal::NotAUrl,
    })?;
    // Normalising can lengthen a URL (percent-encoding, punycode), and the
    // normal form is what is stored and sent.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(UrlRefusal::TooLong);
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefusal::NotHttps),
    }
    let host = url.host().ok_or(UrlRefusal::NoHost)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::HasCredentials);
    }
    if url.fragment().is_some() {
        return Err(UrlRefusal::HasFragment);
    }
    if !allow_private {
        let blocked = match host {
            url::Host::Ipv4(v4) => is_blocked_ip(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => is_blocked_ip(IpAddr::V6(v6)),
            url::Host::Domain(name) => is_localhost_name(name),
        };
        if blocked {
            return Err(UrlRefusal::BlockedAddress);
        }
    }
    Ok(WebhookUrl(url))
}

/// `localhost` and its subdomains, which resolvers answer with loopback
/// without asking DNS (RFC 6761), so the delivery-time check would be the
/// only guard; refusing them at registration gives the developer the reason
/// at once. A trailing dot names the same host. The parser has already
/// lower-cased the name.
fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost")
}

/// The retry schedule of the API contract, in seconds: a delivery is
/// attempted at once, then retried after about 5 s, 5 min, 30 min, 2 h,
/// 5 h, 10 h and 10 h, then failed — about 27.6 hours in all.
pub const RETRY_DELAYS_SECS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// The first attempt and every retry.
pub const MAX_ATTEMPTS: i64 = 1 + RETRY_DELAYS_SECS.len() as i64;

/// The delay in milliseconds before the next attempt, after
/// `attempts_made` failed attempts, or `None` when the attempts are spent
/// (`attempts_made >= MAX_ATTEMPTS`).
///
/// `jitter` is a uniform draw from [0, 1), mapped linearly onto ×0.8..×1.2
/// of the scheduled delay, so endpoints that failed together (an outage)
/// are not all retried in the same second. Values outside [0, 1] are
/// clamped and NaN counts as the middle, so a bad draw only loses the
/// jitter. With no attempt made yet (`attempts_made <= 0`) the delay is 0:
/// the first attempt goes at once.
pub fn retry_delay_millis(attempts_made: i64, jitter: f64) -> Option<i64> {
    if attempts_made >= MAX_ATTEMPTS {
        return None;
    }
    let Some(index) = attempts_made.checked_sub(1).and_then(|index| usize::try_from(index).ok()) else {
        return Some(0);
    };
    let base_millis = RETRY_DELAYS_SECS.get(index)? * 1000;
    let jitter = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
    let factor = 0.8 + 0.4 * jitter;
    // At most 36e6 × 1.2: exact in an f64, and far inside an i64.
    Some((base_millis as f64 * factor).round() as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The vector of Svix's manual-verification guide, which the Standard
    /// Webhooks libraries and many receivers test against. Its secret is
    /// 24 bytes, the shortest the specification allows.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret_from_whsec(text: &str) -> WebhookSecret {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or_else(|| panic!("{text} lacks the prefix"));
        let bytes = STANDARD.decode(encoded).unwrap_or_else(|e| panic!("{e}"));
        WebhookSecret::from_bytes(&bytes).unwrap_or_else(|| panic!("{} bytes is not a secret's length", bytes.len()))
    }

    fn now_secs() -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.map(|d| d.as_secs()).unwrap_or_else(|e| panic!("{e}")).try_into().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asks the Standard Webhooks reference library whether `header`
    /// verifies under `secret` (as a receiver pastes it: the `whsec_` form).
    fn reference_verifies(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let receiver = standardwebhooks::Webhook::new(secret).unwrap_or_else(|e| panic!("{e}"));
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("webhook-id", msg_id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", header.to_string()),
        ] {
            headers.insert(name, http::HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{e}")));
        }
        receiver.verify(body, &headers).is_ok()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn signatures_match_the_published_vector() {
        let secret = secret_from_whsec(VECTOR_SECRET);
        assert_eq!(secret.as_bytes().len(), 24);
        assert_eq!(secret.to_whsec(), VECTOR_SECRET);
        assert_eq!(sign(&secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
        assert_eq!(signature_header(&[&secret], VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
    }

    #[test]
    fn signatures_agree_with_the_reference_library() {
        for body in [&b""[..], b"{}", VECTOR_BODY, "{\"name\":\"Zoë ✓\"}".as_bytes()] {
            let secret = WebhookSecret::generate();
            let reference = standardwebhooks::Webhook::new(&secret.to_whsec()).unwrap_or_else(|e| panic!("{e}"));
            let expected = reference.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1_674_087_231, body);
            let expected = expected.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sign(&secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1_674_087_231, body), expected);
        }
    }

    #[test]
    fn a_rotation_header_verifies_with_either_secret_and_no_other() {
        let (new, previous, stranger) =
            (WebhookSecret::generate(), WebhookSecret::generate(), WebhookSecret::generate());
        let (msg_id, timestamp, body) = ("msg_rotation", now_secs(), br#"{"type":"user.created"}"#);
        let header = signature_header(&[&new, &previous], msg_id, timestamp, body);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [sign(&new, msg_id, timestamp, body), sign(&previous, msg_id, timestamp, body)]);
        assert!(reference_verifies(&new.to_whsec(), msg_id, timestamp, body, &header));
        assert!(reference_verifies(&previous.to_whsec(), msg_id, timestamp, body, &header));
        assert!(!reference_verifies(&stranger.to_whsec(), msg_id, timestamp, body, &header));
        assert!(!reference_verifies(&new.to_whsec(), msg_id, timestamp, b"{}", &header), "another body");
        assert!(!reference_verifies(&new.to_whsec(), "msg_other", timestamp, body, &header), "another id");
        assert_eq!(signature_header(&[], msg_id, timestamp, body), "");
    }

    #[test]
    fn every_signed_part_changes_the_signature() {
        let secret = secret_from_whsec(VECTOR_SECRET);
        let base = sign(&secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_ne!(sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJel", VECTOR_TIMESTAMP, VECTOR_BODY), base);
        assert_ne!(sign(&secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY), base);
        assert_ne!(sign(&secret, VECTOR_MSG_ID, VECTOR_TIMESTAMP, br#"{"test": 2432232315}"#), base);
        assert_ne!(sign(&WebhookSecret::generate(), VECTOR_MSG_ID, VECTOR_TIMESTAMP, VECTOR_BODY), base);
    }

    #[test]
    fn secrets_are_random_bounded_and_never_printed() {
        let secret = WebhookSecret::generate();
        assert_eq!(secret.as_bytes().len(), 32);
        let shown = secret.to_whsec();
        assert_eq!(shown.get(..6), Some(SECRET_PREFIX));
        assert_eq!(STANDARD.decode(&shown[6..]).ok().as_deref(), Some(secret.as_bytes()));
        assert_eq!(shown.len(), 6 + 44, "32 bytes are 44 base64 characters with their padding");
        assert_eq!(secret.clone().as_bytes(), secret.as_bytes());
        assert_eq!(format!("{secret:?}"), "WebhookSecret(..)");

        let drawn: HashSet<Vec<u8>> = (0..64).map(|_| WebhookSecret::generate().as_bytes().to_vec()).collect();
        assert_eq!(drawn.len(), 64);

        assert!(WebhookSecret::from_bytes(&[1; 23]).is_none());
        assert_eq!(WebhookSecret::from_bytes(&[1; 24]).map(|s| s.as_bytes().len()), Some(24));
        assert_eq!(WebhookSecret::from_bytes(&[1; 64]).map(|s| s.as_bytes().len()), Some(64));
        assert!(WebhookSecret::from_bytes(&[1; 65]).is_none());
        assert!(WebhookSecret::from_bytes(&[]).is_none());
    }

    #[test]
    fn blocked_ipv4_ranges_include_both_ends() {
        let blocked = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.0",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.169.254",
            "169.254.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.255",
            "192.168.0.0",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "224.0.0.0",
            "239.255.255.255",
            "240.0.0.0",
            "255.255.255.254",
            "255.255.255.255",
        ];
        for text in blocked {
            assert!(is_blocked_ip(ip(text)), "{text} must be blocked");
        }
    }

    #[test]
    fn ipv4_neighbours_of_blocked_ranges_and_public_addresses_are_allowed() {
        let allowed = [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "1.1.1.1",
        ];
        for text in allowed {
            assert!(!is_blocked_ip(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn blocked_ipv6_ranges_include_both_ends() {
        let blocked = [
            "::",
            "::1",
            "64:ff9b::",
            "64:ff9b::ffff:ffff",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "2001::",
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2002::",
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fc00::",
            "fd00:ec2::254",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "fe80::1",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::",
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ff00::",
            "ff02::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in blocked {
            assert!(is_blocked_ip(ip(text)), "{text} must be blocked");
        }
    }

    #[test]
    fn ipv6_neighbours_of_blocked_ranges_and_public_addresses_are_allowed() {
        let allowed = [
            "2000::",
            "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:1::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2003::",
            "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2606:4700::1111",
            "2001:4860:4860::8888",
        ];
        for text in allowed {
            assert!(!is_blocked_ip(ip(text)), "{text} must be allowed");
        }
    }

    /// Outside global unicast (2000::/3) nothing is a web server: reserved,
    /// unassigned and translated ranges are all refused.
    #[test]
    fn ipv6_outside_global_unicast_is_blocked() {
        let blocked = [
            "::2:0:0:0",
            "64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b::1:0:0",
            "64:ff9b:2::",
            "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "100:0:0:1::",
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "4000::",
            "5f00::1",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::1",
        ];
        for text in blocked {
            assert!(is_blocked_ip(ip(text)), "{text} must be blocked");
        }
    }

    #[test]
    fn ipv4_in_ipv6_is_judged_as_the_ipv4_address() {
        let blocked = [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.0",
            "::ffff:172.16.0.0",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
            "::127.0.0.1",
            "::10.0.0.1",
            "::192.168.1.1",
        ];
        for text in blocked {
            assert!(is_blocked_ip(ip(text)), "{text} must be blocked");
        }
        let allowed =
            ["::ffff:8.8.8.8", "::ffff:1.1.1.1", "::ffff:100.63.255.255", "::ffff:172.15.255.255", "::8.8.8.8"];
        for text in allowed {
            assert!(!is_blocked_ip(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn good_urls_are_kept_in_their_normal_form() {
        let parse = |text: &str| parse_webhook_url(text, false).unwrap_or_else(|e| panic!("{text}: {e}"));
        let named = parse("https://Hooks.Example.com/passgate?tenant=7");
        assert_eq!(named.as_str(), "https://hooks.example.com/passgate?tenant=7");
        assert_eq!(named.url().host_str(), Some("hooks.example.com"));
        assert_eq!(named.host_ip(), None);
        assert_eq!(parse("https://8.8.8.8:8443/hook").host_ip(), Some(ip("8.8.8.8")));
        assert_eq!(parse("https://[2606:4700::1111]/hook").host_ip(), Some(ip("2606:4700::1111")));
        assert_eq!(parse("https://[::ffff:8.8.8.8]/").host_ip(), Some(ip("::ffff:8.8.8.8")));
        for name in ["https://localhost.example.com/", "https://mylocalhost/", "https://localhostx/"] {
            assert!(parse_webhook_url(name, false).is_ok(), "{name} is only a name that looks like localhost");
        }
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let refusal = |text: &str| parse_webhook_url(text, false).err();
        for text in ["", "hooks.example.com/x", "/relative", "https://exa mple.com/", "https://999.1.1.1/", "not a url"]
        {
            assert_eq!(refusal(text), Some(UrlRefusal::NotAUrl), "{text:?}");
        }
        for text in ["http://hooks.example.com/", "ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)"] {
            assert_eq!(refusal(text), Some(UrlRefusal::NotHttps), "{text:?}");
        }
        for text in ["https://user:pass@example.com/", "https://user@example.com/", "https://:pass@example.com/"] {
            assert_eq!(refusal(text), Some(UrlRefusal::HasCredentials), "{text:?}");
        }
        for text in ["https://example.com/#section", "https://example.com/#"] {
            assert_eq!(refusal(text), Some(UrlRefusal::HasFragment), "{text:?}");
        }
        for text in ["https://", "https:///", "https://:443/"] {
            assert_eq!(refusal(text), Some(UrlRefusal::NoHost), "{text:?}");
        }
        let blocked = [
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1:8443/hook",
            "https://[::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[fd00:ec2::254]/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://localhost/",
            "https://LOCALHOST:8080/",
            "https://localhost./",
            "https://api.localhost/",
            "https://ｌｏｃａｌｈｏｓｔ/",
        ];
        for text in blocked {
            assert_eq!(refusal(text), Some(UrlRefusal::BlockedAddress), "{text:?}");
        }
        assert_eq!(UrlRefusal::NotHttps.to_string(), "webhook URLs must use https");
    }

    #[test]
    fn urls_are_at_most_2048_bytes() {
        let prefix = "https://example.com/";
        let longest = format!("{prefix}{}", "a".repeat(MAX_URL_LEN - prefix.len()));
        assert_eq!(parse_webhook_url(&longest, false).map(|url| url.as_str().len()), Ok(MAX_URL_LEN));
        let longer = format!("{longest}a");
        assert_eq!(parse_webhook_url(&longer, false), Err(UrlRefusal::TooLong));
        let expands = format!("{prefix}{}", "é".repeat(700));
        assert!(expands.len() <= MAX_URL_LEN, "short as typed");
        assert_eq!(parse_webhook_url(&expands, false), Err(UrlRefusal::TooLong), "too long once percent-encoded");
    }

    #[test]
    fn allowing_private_lifts_only_the_https_and_address_rules() {
        let private = |text: &str| parse_webhook_url(text, true);
        for text in [
            "http://localhost:3000/hook",
            "http://127.0.0.1/",
            "https://10.0.0.1/",
            "http://[::1]:8080/",
            "http://hooks.example.com/",
            "https://api.localhost/",
        ] {
            assert!(private(text).is_ok(), "{text} with private addresses allowed");
        }
        assert_eq!(private("ftp://127.0.0.1/"), Err(UrlRefusal::NotHttps));
        assert_eq!(private("file:///etc/passwd"), Err(UrlRefusal::NotHttps));
        assert_eq!(private("http://user:pass@localhost/"), Err(UrlRefusal::HasCredentials));
        assert_eq!(private("http://localhost/#x"), Err(UrlRefusal::HasFragment));
        assert_eq!(private("http://"), Err(UrlRefusal::NoHost));
        assert_eq!(private(&format!("http://localhost/{}", "a".repeat(MAX_URL_LEN))), Err(UrlRefusal::TooLong));
    }

    #[test]
    fn retries_follow_the_schedule_within_their_jitter() {
        assert_eq!(MAX_ATTEMPTS, 8);
        for (index, &seconds) in RETRY_DELAYS_SECS.iter().enumerate() {
            let attempts_made = i64::try_from(index).unwrap_or_else(|e| panic!("{e}")) + 1;
            let millis = seconds * 1000;
            let low = retry_delay_millis(attempts_made, 0.0).unwrap_or_else(|| panic!("attempt {attempts_made}"));
            let high = retry_delay_millis(attempts_made, 0.999).unwrap_or_else(|| panic!("attempt {attempts_made}"));
            let middle = retry_delay_millis(attempts_made, 0.5).unwrap_or_else(|| panic!("attempt {attempts_made}"));
            assert_eq!(low, millis * 8 / 10, "after {attempts_made} failures");
            assert!(high > millis * 119 / 100 && high < millis * 12 / 10, "after {attempts_made} failures: {high}");
            assert_eq!(middle, millis, "after {attempts_made} failures");
        }
        assert_eq!(retry_delay_millis(1, 0.0), Some(4_000));
        assert_eq!(retry_delay_millis(7, 0.5), Some(36_000_000));
        assert_eq!(retry_delay_millis(MAX_ATTEMPTS, 0.5), None, "the 8th attempt failed: give up");
        assert_eq!(retry_delay_millis(MAX_ATTEMPTS + 1, 0.5), None);
        assert_eq!(retry_delay_millis(i64::MAX, 0.5), None);
        assert_eq!(retry_delay_millis(0, 0.5), Some(0), "nothing failed yet: the first attempt goes at once");
        assert_eq!(retry_delay_millis(i64::MIN, 0.5), Some(0));
    }

    #[test]
    fn bad_jitter_only_loses_the_jitter() {
        assert_eq!(retry_delay_millis(1, f64::NAN), Some(5_000));
        assert_eq!(retry_delay_millis(1, -3.0), Some(4_000));
        assert_eq!(retry_delay_millis(1, 7.0), Some(6_000));
        assert_eq!(retry_delay_millis(1, f64::INFINITY), Some(6_000));
    }
}
