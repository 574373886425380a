//! Magic-link logins bound to the browser that started them (PKCE).
//!
//! The start makes a PKCE verifier and keeps it, with the login id, in a
//! `__Host-` cookie of the browser that asked; passgate gets only the
//! challenge. A link opened anywhere else (an email scanner, another
//! device, an attacker who intercepted the email) has no verifier, so it
//! cannot be redeemed and, since a failed verifier does not consume the
//! token, the real user's click still works.

use axum::http::HeaderMap;
use passgate_api_types::{StartLoginRequest, VerifyLoginRequest, VerifyLoginResponse};

use super::cookie::{CookieJar, SetCookie};
use crate::{Client, Error, Pkce};

/// The cookie that holds a pending login's id and PKCE verifier.
pub const LOGIN_COOKIE: &str = "__Host-passgate-login";

/// A started link login.
#[derive(Debug, Clone)]
pub struct LinkStart {
    /// The login (`lgn_…`).
    pub login_id: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Keeps the login id and verifier in the browser that started it.
    pub cookie: SetCookie,
}

/// Starts and finishes link logins for one callback URL.
#[derive(Debug, Clone)]
pub struct LinkLogin {
    client: Client,
    callback_url: String,
    include_code: bool,
}

impl LinkLogin {
    /// Logins whose emails link to `callback_url`, with the emailed code
    /// (`includeCode`) so that a user can finish on another device's
    /// email by typing the code here.
    pub fn new(client: Client, callback_url: &str) -> Self {
        Self { client, callback_url: callback_url.into(), include_code: true }
    }

    /// Whether emails also carry a code (default yes).
    pub fn include_code(mut self, include: bool) -> Self {
        self.include_code = include;
        self
    }

    /// The callback URL the emails link to.
    pub fn callback_url(&self) -> &str {
        &self.callback_url
    }

    /// Emails a link (and a code) to `email`, PKCE-bound to this browser.
    pub async fn start(
        &self,
        email: &str,
        ip_address: Option<String>,
        user_agent: Option<String>,
    ) -> Result<LinkStart, Error> {
        let pkce = Pkce::generate();
        let started = self
            .client
            .start_login(&StartLoginRequest {
                email: email.into(),
                validation_url: self.callback_url.clone(),
                state: None,
                code_challenge: Some(pkce.challenge()),
                include_code: Some(self.include_code),
                ip_address,
                user_agent,
                locale: None,
            })
            .await?;
        // Links live at most an hour: the cookie need not outlive them.
        let cookie = SetCookie::new(LOGIN_COOKIE, &format!("{}.{}", started.login_id, pkce.verifier())).max_age(3600);
        Ok(LinkStart { login_id: started.login_id, expires_at: started.expires_at, cookie })
    }

    /// The pending login of this browser: its id and PKCE verifier.
    pub fn pending(headers: &HeaderMap) -> Option<(String, String)> {
        let jar = CookieJar::from_headers(headers);
        let (login_id, verifier) = jar.get(LOGIN_COOKIE)?.split_once('.')?;
        (login_id.starts_with("lgn_") && (43..=128).contains(&verifier.len()))
            .then(|| (login_id.to_string(), verifier.to_string()))
    }

    /// Redeems a link's token with this browser's verifier (when it has
    /// one: an invite's link has no PKCE, and neither has a login started
    /// elsewhere, which passgate then refuses without using the token up).
    pub async fn verify_token(&self, headers: &HeaderMap, token: &str) -> Result<VerifyLoginResponse, Error> {
        let code_verifier = Self::pending(headers).map(|(_, verifier)| verifier);
        self.client
            .verify_login(&VerifyLoginRequest { token: Some(token.into()), code_verifier, ..Default::default() })
            .await
    }

    /// Redeems the emailed code of this browser's pending login; `None`
    /// when this browser started none.
    pub async fn verify_code(&self, headers: &HeaderMap, code: &str) -> Option<Result<VerifyLoginResponse, Error>> {
        let (login_id, verifier) = Self::pending(headers)?;
        let request = VerifyLoginRequest {
            login_id: Some(login_id),
            code: Some(code.trim().into()),
            code_verifier: Some(verifier),
            token: None,
        };
        Some(self.client.verify_login(&request).await)
    }

    /// The cookie that forgets this browser's pending login.
    pub fn clear() -> SetCookie {
        SetCookie::removal(LOGIN_COOKIE)
    }
}
