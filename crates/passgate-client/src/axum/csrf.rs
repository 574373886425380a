//! CSRF protection for the SDK's forms: a double-submit token. A random
//! token (256 bits, CSPRNG) lives in a `__Host-` cookie and in each form's
//! hidden field; a POST passes only when the two are equal (compared in
//! constant time) and its `Origin`, when the browser sends a real one, is
//! the app's own (`null`, which browsers send from `no-referrer` pages,
//! leaves the decision to the cookie). Another site can make a browser post a form but can neither
//! read nor set the cookie (`__Host-` forbids a sibling subdomain from
//! planting one), so it cannot know the value to put in the field.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::cookie::{CookieJar, SetCookie};

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "__Host-passgate-csrf";

/// Issues and checks double-submit CSRF tokens for one app origin.
#[derive(Debug, Clone)]
pub struct Csrf {
    origin: String,
}

impl Csrf {
    /// For forms served from `app_origin` (`https://app.example.com`, no path).
    pub fn new(app_origin: &str) -> Self {
        Self { origin: app_origin.trim_end_matches('/').to_string() }
    }

    /// The token for a form on this response: the request's own cookie
    /// when it has one, else a new token with the cookie that sets it.
    pub fn token(&self, headers: &HeaderMap) -> (String, Option<SetCookie>) {
        match CookieJar::from_headers(headers).get(CSRF_COOKIE) {
            Some(token) if token.len() == 43 => (token.to_string(), None),
            _ => {
                let token = crate::random::token::<32>();
                let cookie = SetCookie::new(CSRF_COOKIE, &token);
                (token, Some(cookie))
            }
        }
    }

    /// Whether a form post with `submitted` as its token may proceed.
    pub fn check(&self, headers: &HeaderMap, submitted: &str) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN) {
            // "null" is what a browser sends from a page with
            // `Referrer-Policy: no-referrer` (the interstitial must be one:
            // its URL holds the token); the cookie check below decides then.
            if origin.as_bytes() != b"null" && origin.as_bytes() != self.origin.as_bytes() {
                return false;
            }
        }
        let jar = CookieJar::from_headers(headers);
        let Some(cookie) = jar.get(CSRF_COOKIE) else { return false };
        !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(cookie: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = cookie {
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("{CSRF_COOKIE}={c}")).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap_or_else(|e| panic!("{e}")));
        }
        h
    }

    #[test]
    fn a_form_passes_only_with_the_cookies_token_from_the_apps_origin() {
        let csrf = Csrf::new("http://localhost:3000/");
        let (token, cookie) = csrf.token(&HeaderMap::new());
        assert!(cookie.is_some());
        assert!(csrf.check(&headers(Some(&token), None), &token));
        assert!(csrf.check(&headers(Some(&token), Some("http://localhost:3000")), &token));
        assert!(!csrf.check(&headers(Some(&token), Some("https://evil.example")), &token));
        // A no-referrer page's form posts with `Origin: null`: the cookie decides.
        assert!(csrf.check(&headers(Some(&token), Some("null")), &token));
        assert!(!csrf.check(&headers(None, Some("null")), &token));
        assert!(!csrf.check(&headers(None, None), &token));
        assert!(!csrf.check(&headers(Some(&token), None), "forged"));
        assert!(!csrf.check(&headers(Some(""), None), ""));
        // A request that has the cookie keeps its token.
        let (again, cookie) = csrf.token(&headers(Some(&token), None));
        assert_eq!(again, token);
        assert!(cookie.is_none());
    }
}
