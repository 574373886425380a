//! Redirect URLs: which `validationUrl`s a project admits, and how the
//! emailed link is built from one.
//!
//! A project lists allowed redirect URLs such as
//! `https://app.example.com/auth/callback`. A `validationUrl` is admitted when
//! its scheme, host and port equal those of an allowed URL and its path lies
//! under the allowed path by whole segments (`/cb` admits `/cb` and `/cb/x`,
//! never `/cbx`). An allowed URL may write its port as `*` (`http://localhost:*`)
//! to admit every port; `passgate dev` uses this for localhost.
//!
//! Checks are made on the raw string as well as on the parsed URL, because
//! URL parsers "helpfully" repair input (`\` becomes `/`, `..` is resolved,
//! `%41` is decoded in hosts) and an attacker lives in the gap between what
//! we checked and what a browser, or the app's server, will open. So
//! anything that needs repairing is refused instead: non-ASCII or invisible
//! characters, backslashes, userinfo, percent-encoding in the authority,
//! fragments, and in the path: dot segments (also percent-encoded, encoded
//! twice, encoded as overlong UTF-8, or followed by `;params`, which Java
//! servers strip before resolving `..`), encoded slashes and empty segments
//! (`/cb//evil.com`). A query may not plant a token: no parameter whose
//! name, decoded and split on `&` and on `;` (which some parsers also
//! split on), is `token` or starts with `token[`.

use url::Url;

/// Longest `validationUrl` we accept; links must survive email clients.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL was refused. Messages are safe to show to API callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("the URL is longer than 2048 characters")]
    TooLong,
    #[error("the URL contains spaces, control or non-ASCII characters")]
    BadCharacter,
    #[error("the URL contains a backslash")]
    Backslash,
    #[error("the URL is not an absolute http(s) URL")]
    NotHttp,
    #[error("the URL carries a user name or password")]
    UserInfo,
    #[error("the URL's host is percent-encoded or malformed")]
    BadHost,
    #[error("the URL's path has dot segments or encoded slashes")]
    BadPath,
    #[error("the URL has a fragment")]
    Fragment,
    #[error("the URL already carries a token parameter")]
    HasToken,
    #[error("the URL does not match any allowed redirect URL of the project")]
    NotAllowed,
    #[error("the allowed redirect URL is malformed: {0}")]
    BadPattern(String),
}

/// Percent-decodes `text` until nothing changes (so `%252e` is seen as the
/// dot it stands for). `None` when the bytes are not UTF-8 (overlong
/// encodings such as `%c0%ae` are not) or it still changes after a few
/// rounds.
fn fully_decoded(text: &str) -> Option<String> {
    let mut current = text.to_string();
    for _ in 0..4 {
        let next = percent_encoding::percent_decode_str(&current).decode_utf8().ok()?.into_owned();
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

/// The path checks (on the raw, lower-cased path): each segment, without
/// its `;params` and fully decoded, must be neither `.` nor `..`, hold no
/// slash or backslash, and be non-empty unless it is the first or last.
fn check_path(raw_path: &str) -> Result<(), RedirectError> {
    let segments: Vec<&str> = raw_path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (at, segment) in segments.iter().enumerate() {
        let name = segment.split(';').next().unwrap_or_default();
        let decoded = fully_decoded(name).ok_or(RedirectError::BadPath)?;
        let empty_inside = decoded.is_empty() && at != 0 && at != last;
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\']) || empty_inside {
            return Err(RedirectError::BadPath);
        }
    }
    Ok(())
}

/// Whether a query plants a `token` parameter, by any spelling a server may
/// read: split on `&` and `;`, names decoded (`+` as a space), case ignored.
fn plants_a_token(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or_default().replace('+', " ");
        match fully_decoded(&name) {
            None => true,
            Some(name) => {
                let name = name.trim().to_ascii_lowercase();
                name == "token" || name.starts_with("token[")
            }
        }
    })
}

/// One allowed redirect URL of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRedirect {
    scheme: String,
    host: String,
    /// `None` admits any port.
    port: Option<u16>,
    /// Path without a trailing slash; empty admits every path.
    path: String,
}

impl AllowedRedirect {
    /// Parses an operator-supplied pattern such as `https://app.example.com/cb`
    /// or `http://localhost:*`.
    pub fn parse(pattern: &str) -> Result<Self, RedirectError> {
        let bad = |why: &str| RedirectError::BadPattern(format!("{pattern:?}: {why}"));
        let (any_port, concrete) = match split_wildcard_port(pattern) {
            Some(replaced) => (true, replaced),
            None => (false, pattern.to_string()),
        };
        if concrete.contains('*') {
            return Err(bad("a wildcard is supported only as the port, as in http://localhost:*"));
        }
        let url = check_raw_and_parse(&concrete).map_err(|e| bad(&e.to_string()))?;
        if url.query().is_some() {
            return Err(bad("a query string is not allowed in a redirect pattern"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
        let port = if any_port { None } else { url.port_or_known_default() };
        Ok(Self { scheme: url.scheme().to_string(), host, port, path: url.path().trim_end_matches('/').to_string() })
    }

    fn admits(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
            && path_is_under(url.path(), &self.path)
    }
}

/// `http://localhost:*/x` → `http://localhost:1/x`, so the rest parses normally.
fn split_wildcard_port(pattern: &str) -> Option<String> {
    let scheme_end = pattern.find("://")? + 3;
    let rest = &pattern[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority.strip_suffix(":*")?;
    Some(format!("{}{host}:1{}", &pattern[..scheme_end], &rest[authority_end..]))
}

fn path_is_under(path: &str, prefix: &str) -> bool {
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The raw-string checks shared by patterns and candidate URLs, then parsing.
fn check_raw_and_parse(raw: &str) -> Result<Url, RedirectError> {
    if raw.len() > MAX_URL_LEN {
        return Err(RedirectError::TooLong);
    }
    if raw.contains('\\') {
        return Err(RedirectError::Backslash);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RedirectError::BadCharacter);
    }
    let lower = raw.to_ascii_lowercase();
    let after_scheme =
        lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).ok_or(RedirectError::NotHttp)?;
    let authority_end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    if authority.contains('@') {
        return Err(RedirectError::UserInfo);
    }
    if authority.is_empty() || authority.contains('%') {
        return Err(RedirectError::BadHost);
    }
    let rest = &after_scheme[authority_end..];
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let raw_path = &rest[..path_end];
    check_path(raw_path)?;
    if raw.contains('#') {
        return Err(RedirectError::Fragment);
    }
    let url = Url::parse(raw).map_err(|_| RedirectError::NotHttp)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::UserInfo);
    }
    match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => {}
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
        _ => return Err(RedirectError::BadHost),
    }
    Ok(url)
}

/// A `validationUrl` admitted by a project's allowed redirect URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationUrl(Url);

impl ValidationUrl {
    /// Checks `raw` against `allowed` (operator patterns, already parsed).
    pub fn check(raw: &str, allowed: &[AllowedRedirect]) -> Result<Self, RedirectError> {
        let url = check_raw_and_parse(raw)?;
        if url.query().is_some_and(plants_a_token) {
            return Err(RedirectError::HasToken);
        }
        if allowed.iter().any(|a| a.admits(&url)) { Ok(Self(url)) } else { Err(RedirectError::NotAllowed) }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The link to email: this URL with `token=<token>` added to its query,
    /// any existing query kept.
    pub fn link_with_token(&self, token: &str) -> String {
        let mut url = self.0.clone();
        url.query_pairs_mut().append_pair("token", token);
        url.into()
    }
}

/// Parses every pattern, failing on the first malformed one.
pub fn parse_allowed(patterns: &[String]) -> Result<Vec<AllowedRedirect>, RedirectError> {
    patterns.iter().map(|p| AllowedRedirect::parse(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allowed() -> Vec<AllowedRedirect> {
        parse_allowed(&["https://app.example.com/cb".to_string(), "http://localhost:*".to_string()])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(raw: &str) -> Result<ValidationUrl, RedirectError> {
        ValidationUrl::check(raw, &allowed())
    }

    #[test]
    fn admits_paths_under_the_prefix_by_whole_segments() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com/cb/",
            "https://app.example.com/cb/deeper?x=1",
            "https://APP.example.com:443/cb",
            "http://localhost:3000/anything",
            "http://localhost/",
        ] {
            assert!(check(ok).is_ok(), "{ok} should be admitted");
        }
        assert_eq!(check("https://app.example.com/cbx"), Err(RedirectError::NotAllowed));
        assert_eq!(check("https://app.example.com/"), Err(RedirectError::NotAllowed));
    }

    /// SECURITY S15: every trick in the list is refused.
    #[test]
    fn refuses_every_s15_trick() {
        let tricks = [
            "https://evil.example.com/cb",
            "https://app.example.com.evil.test/cb",
            "https://app.example.com:8443/cb",
            "http://app.example.com/cb",
            "//app.example.com/cb",
            "https:app.example.com/cb",
            "https:/app.example.com/cb",
            "https://app.example.com@evil.test/cb",
            "https://user:pass@app.example.com/cb",
            "https://evil.test\\@app.example.com/cb",
            "https://app.example.com\\cb",
            "https://app.example.com/cb\\..\\x",
            "https://%61pp.example.com/cb",
            "https://app.example.com%2eevil.test/cb",
            "https://app.example.com/cb/%2e%2e/admin",
            "https://app.example.com/cb/../admin",
            "https://app.example.com/cb/./x",
            "https://app.example.com/cb%2f..%2fadmin",
            "https://аpp.example.com/cb",
            "https://xn--pp-8cd.example.com/cb",
            "javascript:alert(1)//https://app.example.com/cb",
            "JavaScript://app.example.com/cb%0aalert(1)",
            "data:text/html,https://app.example.com/cb",
            "https://app.example.com/cbx",
            "https://app.example.com/c",
            "https://app.example.com/cb#frag",
            "https://app.example.com/cb?token=abc",
            "https://app.example.com/cb?a=1&TOKEN=abc",
            // Other query separators and spellings a server may read as `token`.
            "https://app.example.com/cb?x=1;token=abc",
            "https://app.example.com/cb?token[]=abc",
            "https://app.example.com/cb?token[a]=abc",
            "https://app.example.com/cb?%74oken=abc",
            "https://app.example.com/cb?%2574oken=abc",
            "https://app.example.com/cb?to%6ben%5B%5D=abc",
            "https://app.example.com/cb?x=1&+token=abc",
            // Path parameters, double encodings, overlong UTF-8, empty segments.
            "https://app.example.com/cb/..;/admin",
            "https://app.example.com/cb/%2e%2e;/admin",
            "https://app.example.com/cb/.;x/admin",
            "https://app.example.com/cb/%252e%252e/admin",
            "https://app.example.com/cb/%25252e%25252e/admin",
            "https://app.example.com/cb/%c0%ae%c0%ae/admin",
            "https://app.example.com/cb/%e0%80%ae%e0%80%ae/admin",
            "https://app.example.com/cb//evil.com",
            "https://app.example.com/cb/x//y",
            "https://app.example.com/cb/%252f/admin",
            "https://app.example.com/cb/;/admin",
            " https://app.example.com/cb",
            "https://app.example.com/cb\n",
            "ftp://app.example.com/cb",
            "http://localhost.evil.test:3000/cb",
            "http://127.0.0.1:3000/cb",
        ];
        for trick in tricks {
            assert!(check(trick).is_err(), "{trick:?} must be refused");
        }
    }

    #[test]
    fn builds_the_link_keeping_the_query() {
        let url = check("https://app.example.com/cb?next=%2Fhome&a=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.link_with_token("T0k"), "https://app.example.com/cb?next=%2Fhome&a=1&token=T0k");
        let bare = check("https://app.example.com/cb").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare.link_with_token("T0k"), "https://app.example.com/cb?token=T0k");
    }

    #[test]
    fn refuses_malformed_patterns() {
        for p in [
            "app.example.com",
            "https://u@app.example.com",
            "https://app.example.com/cb?x=1",
            "ftp://x.example",
            "https://*.example.com/cb",
            "https://app.example.com/cb*",
            "http://localhost:3*",
        ] {
            assert!(AllowedRedirect::parse(p).is_err(), "{p}");
        }
        assert!(AllowedRedirect::parse("http://localhost:*").is_ok());
    }

    #[test]
    fn ordinary_paths_and_queries_stay_admitted() {
        for ok in [
            "https://app.example.com/cb/caf%C3%A9",
            "https://app.example.com/cb/a.b/..c/...",
            "https://app.example.com/cb?tokens=1&my_token=2&token_hint=3",
            "https://app.example.com/cb?x=1;y=2",
        ] {
            assert!(check(ok).is_ok(), "{ok} should be admitted");
        }
    }

    proptest! {
        /// Whatever the input, an admitted URL has exactly the allowed
        /// origin and a path under the allowed prefix.
        #[test]
        fn admitted_urls_stay_inside_the_allowlist(s in "(https?://)?[a-zA-Z0-9.@:/%?#&=\\\\-]{0,60}") {
            if let Ok(v) = check(&s) {
                let url = Url::parse(v.as_str()).unwrap_or_else(|e| panic!("{e}"));
                let ok_app = url.scheme() == "https" && url.host_str() == Some("app.example.com")
                    && url.port_or_known_default() == Some(443)
                    && (url.path() == "/cb" || url.path().starts_with("/cb/"));
                let ok_local = url.scheme() == "http" && url.host_str() == Some("localhost");
                prop_assert!(ok_app || ok_local, "{s} admitted as {url}");
                prop_assert!(url.username().is_empty() && url.password().is_none());
                prop_assert!(url.fragment().is_none());
            }
        }

        #[test]
        fn paths_outside_the_prefix_are_refused(suffix in "[a-z0-9]{1,10}") {
            let raw = format!("https://app.example.com/cb{suffix}");
            prop_assert_eq!(check(&raw), Err(RedirectError::NotAllowed));
        }

        #[test]
        fn appending_the_token_keeps_the_url_admitted(path in "(/[a-z0-9]{1,8}){0,3}", token in "[A-Za-z0-9]{48}") {
            let v = check(&format!("https://app.example.com/cb{path}")).unwrap_or_else(|e| panic!("{e}"));
            let link = v.link_with_token(&token);
            let url = Url::parse(&link).unwrap_or_else(|e| panic!("{e}"));
            let got = url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
            prop_assert_eq!(got, Some(token));
        }
    }
}
