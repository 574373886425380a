//! [`Auth`]: the SDK's pieces put together for an app's sign-in routes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use passgate_api_types::{ErrorCode, SendOtpRequest, SendOtpResponse, UserView, VerifyOtpRequest, VerifyOtpResponse};

use super::cookie::SetCookie;
use super::csrf::Csrf;
use super::link::{LinkLogin, LinkStart};
use super::pages;
use super::policy::{Policy, Refusal, VerifiedUser};
use super::session::{NewSession, SessionRecord, SessionStoreError, Sessions};
use crate::{Client, Error, JwtError, JwtVerifier, SecretKey};

/// Where passgate is, the key of the app's project, and where the app is.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// passgate's base URL, e.g. `http://127.0.0.1:8080`.
    pub passgate_url: String,
    /// The project's secret key.
    pub api_key: SecretKey,
    /// The app's public URL as browsers see it, e.g. `https://app.example.com`;
    /// emails link to its `/auth/callback`, and forms must come from its origin.
    pub app_url: String,
}

/// Why a sign-in did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A policy hook said no.
    #[error("refused by policy: {0}")]
    Refused(#[from] Refusal),
    /// passgate said no, or could not be reached.
    #[error(transparent)]
    Passgate(#[from] Error),
    /// passgate's JWT did not verify (S19): the sign-in is refused.
    #[error("the result JWT was refused: {0}")]
    Jwt(#[from] JwtError),
    /// The form's CSRF token or origin was wrong.
    #[error("the form's CSRF check failed")]
    Csrf,
    /// No login was started in this browser (a link or code from elsewhere).
    #[error("no sign-in was started in this browser")]
    OtherDevice,
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] SessionStoreError),
}

impl LoginError {
    /// What to tell the user: never a token, never an internal detail.
    pub fn user_message(&self) -> String {
        match self {
            Self::Refused(refusal) => refusal.0.clone(),
            Self::Csrf => "This form has expired. Open the link or start again.".into(),
            Self::OtherDevice => "This sign-in was started in another browser. Type the code from the email on \
                                  the page where you asked to sign in."
                .into(),
            Self::Passgate(e) => match e.code() {
                Some(ErrorCode::TokenExpired) => "This link has expired. Ask for a new one.".into(),
                Some(ErrorCode::TokenUsed) => match e.api().and_then(|a| a.problem().used_at.clone()) {
                    Some(at) => format!("This link was already used (at {at}). Ask for a new one."),
                    None => "This link was already used. Ask for a new one.".into(),
                },
                Some(ErrorCode::TokenInvalid | ErrorCode::InvalidTokenFormat | ErrorCode::TokenRevoked) => {
                    "This link is not valid. Ask for a new one.".into()
                }
                Some(ErrorCode::TokenBurned) => "This link can no longer be used. Ask for a new one.".into(),
                Some(ErrorCode::CodeVerifierMismatch) => Self::OtherDevice.user_message(),
                Some(ErrorCode::CodeInvalid | ErrorCode::OtpInvalid) => "That code is not right.".into(),
                Some(ErrorCode::OtpExpired) => "That code has expired. Ask for a new one.".into(),
                Some(ErrorCode::OtpUsed) => "That code was already used. Ask for a new one.".into(),
                Some(ErrorCode::OtpLocked) => "Too many wrong codes. Wait a little, then ask for a new one.".into(),
                Some(ErrorCode::RateLimited) => "Too many attempts. Wait a little and try again.".into(),
                Some(ErrorCode::InvalidEmail) => "That is not a valid email address.".into(),
                Some(ErrorCode::EmailNotAllowed) => "This address may not sign in here.".into(),
                _ => "Something went wrong. Try again in a moment.".into(),
            },
            Self::Jwt(_) | Self::Store(_) => "Something went wrong. Try again in a moment.".into(),
        }
    }

    /// The HTTP status for a page or JSON answer about this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::OtherDevice => StatusCode::BAD_REQUEST,
            Self::Passgate(e) => match e.api().map(|a| a.status()) {
                Some(s) if s < 500 => StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::Jwt(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of this error for a JSON answer.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused(_) => "email_not_allowed",
            Self::Csrf => "csrf_failed",
            Self::OtherDevice => "other_device",
            Self::Passgate(e) => e.api().map_or("passgate_unavailable", |a| a.code_str()),
            Self::Jwt(_) => "jwt_invalid",
            Self::Store(_) => "session_store_unavailable",
        }
    }
}

/// A finished sign-in: the session, the cookies to set, and where to go.
#[derive(Debug)]
pub struct SignedInNow {
    /// The new session.
    pub session: SessionRecord,
    /// The cookies to set: the session's, and any that clear login state.
    pub cookies: Vec<SetCookie>,
    /// Where the user goes now (the policy's home, or onboarding for a new user).
    pub landing: String,
}

impl SignedInNow {
    /// `303 See Other` to the landing page, setting the cookies. The URL it
    /// names carries no token, and `Referrer-Policy: no-referrer` keeps the
    /// callback's URL out of the next request.
    pub fn redirect(self) -> Response {
        let mut response = Redirect::to(&self.landing).into_response();
        append_cookies(&mut response, &self.cookies);
        response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }
}

struct Inner {
    client: Client,
    verifier: JwtVerifier,
    sessions: Sessions,
    policy: Policy,
    csrf: Csrf,
    link: LinkLogin,
}

/// The SDK's pieces for one app: the client, the JWT verifier, sessions,
/// policy, CSRF and the link flow. Cheap to clone; keep it in the router's
/// state (`Auth: FromRef<YourState>` makes [`SignedIn`] and the guard work).
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("callback", &self.inner.link.callback_url()).finish_non_exhaustive()
    }
}

impl Auth {
    /// Connects to passgate and learns the key's project (`GET
    /// /api/v2/project`): the `aud` and `iss` its JWTs must carry.
    pub async fn connect(config: AuthConfig, sessions: Sessions, policy: Policy) -> Result<Self, Error> {
        let client = Client::new(&config.passgate_url, config.api_key)?;
        let project = client.project().await?;
        let verifier = JwtVerifier::new(&client, &project.issuer, &project.project_id);
        Self::with_verifier(client, verifier, &config.app_url, sessions, policy)
    }

    /// From parts made by hand (a verifier with a pinned audience and issuer).
    pub fn with_verifier(
        client: Client,
        verifier: JwtVerifier,
        app_url: &str,
        sessions: Sessions,
        policy: Policy,
    ) -> Result<Self, Error> {
        let app = url::Url::parse(app_url).map_err(|e| Error::Config(format!("app URL: {e}")))?;
        let origin = app.origin().ascii_serialization();
        let callback = format!("{}/auth/callback", app_url.trim_end_matches('/'));
        let link = LinkLogin::new(client.clone(), &callback);
        Ok(Self { inner: Arc::new(Inner { client, verifier, sessions, policy, csrf: Csrf::new(&origin), link }) })
    }

    /// The client, for any other call to passgate.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The sessions (to list a user's, or end one).
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// The policy hooks.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// CSRF tokens for the app's own forms.
    pub fn csrf(&self) -> &Csrf {
        &self.inner.csrf
    }

    /// The link-login flow.
    pub fn link(&self) -> &LinkLogin {
        &self.inner.link
    }

    /// The signed-in session of this request, if any.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<SessionRecord>, SessionStoreError> {
        self.inner.sessions.current(headers).await
    }

    // ---- magic links ----------------------------------------------------

    /// Starts a link login after the policy's start checks.
    pub async fn start_link(
        &self,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
        email: &str,
    ) -> Result<LinkStart, LoginError> {
        self.inner.policy.check_start(email)?;
        Ok(self.inner.link.start(email, ip.map(|ip| ip.to_string()), user_agent(headers)).await?)
    }

    /// `GET /auth/callback?token=…`: never verifies. Renders "Continue
    /// signing in" (with a CSRF token), and says so when this browser did
    /// not start the login.
    pub fn callback_page(&self, headers: &HeaderMap, token: Option<&str>) -> Response {
        let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 256) else {
            return pages::failure(StatusCode::BAD_REQUEST, "This sign-in link is incomplete. Ask for a new one.");
        };
        let (csrf, cookie) = self.inner.csrf.token(headers);
        let other_device = LinkLogin::pending(headers).is_none();
        let mut response = pages::interstitial(token, &csrf, other_device);
        append_cookies(&mut response, cookie.as_slice());
        response
    }

    /// `POST /auth/callback` (form `token`, `csrf`): verifies, starts the
    /// session, and redirects to the landing page; or shows why not.
    pub async fn callback_submit(&self, headers: &HeaderMap, token: &str, csrf: &str) -> Response {
        if !self.inner.csrf.check(headers, csrf) {
            return failure_page(&LoginError::Csrf);
        }
        let verified = match self.inner.link.verify_token(headers, token).await {
            Ok(v) => v,
            Err(e) => return failure_page(&e.into()),
        };
        match self.finish(headers, &verified.user, &verified.jwt).await {
            Ok(mut done) => {
                done.cookies.push(LinkLogin::clear());
                done.redirect()
            }
            Err(e) => failure_page(&e),
        }
    }

    /// The emailed code of this browser's link login (form `code`, `csrf`).
    pub async fn link_code_submit(
        &self,
        headers: &HeaderMap,
        code: &str,
        csrf: &str,
    ) -> Result<SignedInNow, LoginError> {
        if !self.inner.csrf.check(headers, csrf) {
            return Err(LoginError::Csrf);
        }
        let verified = self.inner.link.verify_code(headers, code).await.ok_or(LoginError::OtherDevice)??;
        let mut done = self.finish(headers, &verified.user, &verified.jwt).await?;
        done.cookies.push(LinkLogin::clear());
        Ok(done)
    }

    // ---- one-time codes -------------------------------------------------

    /// Emails a one-time code after the policy's start checks; with the
    /// browser's `targetPublicKey` when it will hold a session key.
    pub async fn send_code(
        &self,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
        email: &str,
        target_public_key: Option<String>,
    ) -> Result<SendOtpResponse, LoginError> {
        self.inner.policy.check_start(email)?;
        let request = SendOtpRequest {
            email: email.into(),
            otp_length: None,
            alphanumeric: None,
            expires_in: None,
            app_name: None,
            target_public_key,
            ip_address: ip.map(|ip| ip.to_string()),
            user_agent: user_agent(headers),
        };
        Ok(self.inner.client.send_otp(&request).await?)
    }

    /// Verifies a one-time code and starts the session. The answer's
    /// `authSession` (when a target key was given) is for the browser,
    /// which alone can open its bundle; pass it through untouched.
    pub async fn verify_code(
        &self,
        headers: &HeaderMap,
        request: &VerifyOtpRequest,
    ) -> Result<(VerifyOtpResponse, SignedInNow), LoginError> {
        let verified = self.inner.client.verify_otp(request).await?;
        let done = self.finish(headers, &verified.user, &verified.jwt).await?;
        Ok((verified, done))
    }

    // ---- sessions ---------------------------------------------------------

    /// Checks passgate's JWT (S19), runs the after-verify policy and starts
    /// a session with a new id.
    pub async fn finish(&self, headers: &HeaderMap, user: &UserView, jwt: &str) -> Result<SignedInNow, LoginError> {
        let claims = self.inner.verifier.verify(jwt).await?;
        if claims.sub != user.id || claims.email != user.email {
            return Err(LoginError::Jwt(JwtError::Claim("sub/email")));
        }
        let method = claims.amr.first().cloned().unwrap_or_default();
        let verified = VerifiedUser {
            user_id: claims.sub.clone(),
            email: claims.email.clone(),
            is_new_user: user.is_new_user,
            method: method.clone(),
            claims,
        };
        let roles = self.inner.policy.check_verified(&verified)?;
        let (session, cookie) = self
            .inner
            .sessions
            .start(
                headers,
                NewSession {
                    user_id: verified.user_id.clone(),
                    email: verified.email.clone(),
                    roles,
                    method,
                    user_agent: user_agent(headers),
                },
            )
            .await?;
        let landing = self.inner.policy.landing(&verified).to_string();
        Ok(SignedInNow { session, cookies: vec![cookie], landing })
    }

    /// `POST /logout` (form `csrf`): ends this session, `303` to `/`.
    pub async fn logout(&self, headers: &HeaderMap, csrf: &str) -> Response {
        if !self.inner.csrf.check(headers, csrf) {
            return failure_page(&LoginError::Csrf);
        }
        match self.inner.sessions.end(headers).await {
            Ok(cookie) => {
                let mut response = Redirect::to("/").into_response();
                append_cookies(&mut response, &[cookie]);
                response
            }
            Err(e) => failure_page(&e.into()),
        }
    }

    /// `POST /sessions/revoke-all` (form `csrf`): "sign out everywhere".
    /// Ends every session of the user in the app and revokes every session
    /// key passgate holds for them (what browsers stamp requests with).
    pub async fn sign_out_everywhere(&self, headers: &HeaderMap, csrf: &str) -> Response {
        if !self.inner.csrf.check(headers, csrf) {
            return failure_page(&LoginError::Csrf);
        }
        let session = match self.current(headers).await {
            Ok(Some(session)) => session,
            Ok(None) => return Redirect::to("/").into_response(),
            Err(e) => return failure_page(&e.into()),
        };
        if let Err(e) = self.inner.sessions.end_everywhere(&session.user_id).await {
            return failure_page(&e.into());
        }
        // The app's sessions are gone whatever passgate answers; its session
        // keys expire on their own if this call fails.
        if let Err(e) = self.inner.client.revoke_user_sessions(&session.user_id).await {
            tracing::warn!(error = %e, "revoking the user's passgate session keys failed");
        }
        let mut response = Redirect::to("/").into_response();
        append_cookies(&mut response, &[SetCookie::removal(super::session::SESSION_COOKIE)]);
        response
    }
}

/// The signed-in session, as an extractor: `401` (JSON) without one.
/// For pages that should redirect instead, call [`Auth::current`].
#[derive(Debug, Clone)]
pub struct SignedIn(
    /// The session.
    pub SessionRecord,
);

impl<S> FromRequestParts<S> for SignedIn
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Auth::from_ref(state).current(&parts.headers).await {
            Ok(Some(session)) => Ok(Self(session)),
            Ok(None) => Err(json_error(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first")),
            Err(e) => {
                tracing::error!(error = %e, "session store");
                Err(json_error(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable", "try again shortly"))
            }
        }
    }
}

/// A small JSON error: `{"status", "code", "detail"}`.
pub(crate) fn json_error(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "status": status.as_u16(), "code": code, "detail": detail });
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn failure_page(e: &LoginError) -> Response {
    pages::failure(e.status(), &e.user_message())
}

fn append_cookies(response: &mut Response, cookies: &[SetCookie]) {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie.header_value());
    }
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(512).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// S17: the landing after a verify is a 303 to a URL without the token,
    /// with `Referrer-Policy: no-referrer`, setting every cookie it carries.
    #[test]
    fn the_landing_redirect_sends_no_referrer_and_no_token() {
        let session = SessionRecord {
            handle: "h".into(),
            user_id: "usr_1".into(),
            email: "ada@example.com".into(),
            roles: vec![],
            method: "email_link".into(),
            created_at: 0,
            expires_at: 1,
            user_agent: None,
        };
        let cookies = vec![SetCookie::new("__Host-session", "id"), LinkLogin::clear()];
        let response = SignedInNow { session, cookies, landing: "/dashboard".into() }.redirect();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let headers = response.headers();
        assert_eq!(headers[header::LOCATION], "/dashboard");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers.get_all(header::SET_COOKIE).iter().count(), 2);
    }
}
