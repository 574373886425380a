//! Reading the `Cookie` header and writing `Set-Cookie` headers with the
//! attributes the SDK's cookies must carry (S22).

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookies a request carried.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    pairs: Vec<(String, String)>,
}

impl CookieJar {
    /// Every cookie of every `Cookie` header of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let pairs = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                Some((name.trim().to_string(), value.trim().trim_matches('"').to_string()))
            })
            .collect();
        Self { pairs }
    }

    /// The value of the first cookie called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A `Set-Cookie` for a `__Host-` cookie: `Secure; HttpOnly;
/// SameSite=Lax; Path=/` and never a `Domain`, so the cookie is bound to
/// the exact host, travels only over HTTPS (browsers treat `localhost` as
/// secure), is out of reach of page scripts, and is not sent on cross-site
/// subrequests or form posts.
///
/// ```
/// use passgate_client::axum::SetCookie;
/// let set = SetCookie::new("__Host-session", "abc").max_age(3600).to_string();
/// assert_eq!(set, "__Host-session=abc; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Lax");
/// ```
#[derive(Debug, Clone)]
pub struct SetCookie {
    name: String,
    value: String,
    max_age: Option<i64>,
}

impl SetCookie {
    /// A session cookie (no `Max-Age`: gone when the browser closes).
    pub fn new(name: &str, value: &str) -> Self {
        Self { name: name.into(), value: value.into(), max_age: None }
    }

    /// A cookie that removes `name` from the browser.
    pub fn removal(name: &str) -> Self {
        Self { name: name.into(), value: String::new(), max_age: Some(0) }
    }

    /// Lives `seconds` (`0` removes it).
    pub fn max_age(mut self, seconds: i64) -> Self {
        self.max_age = Some(seconds.max(0));
        self
    }

    /// As a header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl std::fmt::Display for SetCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        if let Some(age) = self.max_age {
            write!(f, "; Max-Age={age}")?;
        }
        f.write_str("; Path=/; Secure; HttpOnly; SameSite=Lax")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; __Host-session=xyz"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=\"2\""));
        let jar = CookieJar::from_headers(&headers);
        assert_eq!(
            (jar.get("a"), jar.get("__Host-session"), jar.get("b"), jar.get("c")),
            (Some("1"), Some("xyz"), Some("2"), None)
        );
    }

    #[test]
    fn every_cookie_carries_the_s22_attributes_and_no_domain() {
        for set in [
            SetCookie::new("__Host-x", "v"),
            SetCookie::removal("__Host-x"),
            SetCookie::new("__Host-x", "v").max_age(60),
        ] {
            let text = set.to_string();
            let attributes: Vec<&str> = text.split("; ").skip(1).collect();
            for required in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
                assert!(attributes.contains(&required), "{text} lacks {required}");
            }
            assert!(!text.to_ascii_lowercase().contains("domain"), "{text}");
        }
        assert!(SetCookie::removal("__Host-x").to_string().contains("Max-Age=0"));
    }
}
