//! The typed client: one method per endpoint of passgate's HTTP API.
//!
//! Retries are made only where a repeat cannot do harm: reads, deletes and
//! other idempotent calls, and the calls that send email, which carry an
//! `Idempotency-Key` (the same key on every attempt, so passgate answers a
//! repeat with the first response and sends nothing twice). Verifying a
//! token or a code is never retried: it works once, and a repeat after a
//! lost answer would report `token_used` for a login that succeeded.

use std::time::Duration;

use passgate_api_types::*;
use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ApiError, Error};
use crate::secret::SecretKey;

/// How a call may be repeated after a failure that may be transient.
#[derive(Debug, Clone)]
enum Retry {
    /// Never (verify: single use).
    Never,
    /// Safe by the method's semantics (GET, PUT, DELETE).
    Idempotent,
    /// Safe because of this `Idempotency-Key`, sent on every attempt.
    WithKey(String),
}

/// A request signed in the browser with a session key (`X-Stamp`), passed
/// through by the app's backend to `/api/v2/session/…` unchanged: the stamp
/// covers the exact body bytes, so the backend must not re-serialise them.
#[derive(Debug, Clone)]
pub struct StampedRequest {
    /// The `X-Stamp` header's value.
    pub stamp: String,
    /// The body exactly as the browser signed it.
    pub body: Vec<u8>,
}

/// Builds a [`Client`] with settings other than the defaults.
///
/// ```
/// use std::time::Duration;
/// use passgate_client::{Client, SecretKey};
///
/// let client = Client::builder("https://auth.example.com", SecretKey::new("sk_live_…"))
///     .timeout(Duration::from_secs(5))
///     .max_retries(1)
///     .build()
///     .expect("a valid base URL");
/// # let _ = client;
/// ```
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    key: SecretKey,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
}

impl ClientBuilder {
    /// The whole time a call may take, per attempt (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time to open a connection (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of a safe call after a connection error, a timeout or a
    /// `502`/`503`/`504` (default 2; 0 turns retries off).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The client. Fails on a base URL that is not an `http` or `https` URL.
    pub fn build(self) -> Result<Client, Error> {
        let base = Url::parse(&self.base_url).map_err(|e| Error::Config(format!("base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config("base URL must be an http or https URL".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // passgate never redirects its API; a redirect would carry the
            // secret key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("passgate-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client { http, base, key: self.key, max_retries: self.max_retries })
    }
}

/// A client of one passgate project, authenticated by its secret key.
/// Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: SecretKey,
    max_retries: u32,
}

impl Client {
    /// A client with the default timeouts and retries.
    pub fn new(base_url: &str, key: SecretKey) -> Result<Self, Error> {
        Self::builder(base_url, key).build()
    }

    /// A builder for other settings.
    pub fn builder(base_url: &str, key: SecretKey) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_string(),
            key,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 2,
        }
    }

    /// passgate's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    // ---- magic links ---------------------------------------------------

    /// `POST /api/v2/auth/start`: emails a sign-in link. Retried safely
    /// under a fresh `Idempotency-Key`.
    pub async fn start_login(&self, request: &StartLoginRequest) -> Result<StartLoginResponse, Error> {
        self.start_login_with_key(request, &new_idempotency_key()).await
    }

    /// [`Client::start_login`] under your own `Idempotency-Key` (for example
    /// one kept with a form submission, so a double click sends one email).
    pub async fn start_login_with_key(
        &self,
        request: &StartLoginRequest,
        idempotency_key: &str,
    ) -> Result<StartLoginResponse, Error> {
        self.json(Method::POST, &["auth", "start"], Some(request), Retry::WithKey(idempotency_key.into())).await
    }

    /// `POST /api/v2/auth/verify`: redeems a link's token (with the PKCE
    /// verifier) or a login's emailed code. Never retried.
    pub async fn verify_login(&self, request: &VerifyLoginRequest) -> Result<VerifyLoginResponse, Error> {
        self.json(Method::POST, &["auth", "verify"], Some(request), Retry::Never).await
    }

    /// `GET /api/v2/auth/logins/{loginId}`: where a login and its email stand.
    pub async fn login_status(&self, login_id: &str) -> Result<LoginStatusResponse, Error> {
        self.json(Method::GET, &["auth", "logins", login_id], None::<&()>, Retry::Idempotent).await
    }

    // ---- invites -------------------------------------------------------

    /// `POST /api/v2/invites`: emails an invite link.
    pub async fn create_invite(&self, request: &CreateInviteRequest) -> Result<CreateInviteResponse, Error> {
        let key = Retry::WithKey(new_idempotency_key());
        self.json(Method::POST, &["invites"], Some(request), key).await
    }

    /// `GET /api/v2/invites`: a page of invites.
    pub async fn list_invites(&self, query: &InviteListQuery) -> Result<InviteList, Error> {
        self.json_query(&["invites"], query).await
    }

    /// `DELETE /api/v2/invites/{inviteId}`: revokes an invite; its link stops working at once.
    pub async fn revoke_invite(&self, invite_id: &str) -> Result<InviteView, Error> {
        self.json(Method::DELETE, &["invites", invite_id], None::<&()>, Retry::Idempotent).await
    }

    // ---- one-time codes ------------------------------------------------

    /// `POST /api/v2/otp/send`: emails a one-time code.
    pub async fn send_otp(&self, request: &SendOtpRequest) -> Result<SendOtpResponse, Error> {
        self.send_otp_with_key(request, &new_idempotency_key()).await
    }

    /// [`Client::send_otp`] under your own `Idempotency-Key`.
    pub async fn send_otp_with_key(
        &self,
        request: &SendOtpRequest,
        idempotency_key: &str,
    ) -> Result<SendOtpResponse, Error> {
        self.json(Method::POST, &["otp", "send"], Some(request), Retry::WithKey(idempotency_key.into())).await
    }

    /// `POST /api/v2/otp/verify`: checks a code; with a `targetPublicKey`,
    /// returns the sealed session credential for the browser. Never retried.
    pub async fn verify_otp(&self, request: &VerifyOtpRequest) -> Result<VerifyOtpResponse, Error> {
        self.json(Method::POST, &["otp", "verify"], Some(request), Retry::Never).await
    }

    // ---- stamped session requests (passed through from the browser) -----

    /// `POST /api/v2/session/whoami` with the browser's stamp.
    pub async fn session_whoami(&self, request: &StampedRequest) -> Result<WhoamiResponse, Error> {
        self.stamped("whoami", request).await
    }

    /// `POST /api/v2/session/revoke` with the browser's stamp.
    pub async fn session_revoke(&self, request: &StampedRequest) -> Result<RevokedSessionResponse, Error> {
        self.stamped("revoke", request).await
    }

    /// `POST /api/v2/session/activity` with the browser's stamp.
    pub async fn session_activity(&self, request: &StampedRequest) -> Result<ActivityResponse, Error> {
        self.stamped("activity", request).await
    }

    // ---- users ----------------------------------------------------------

    /// `GET /api/v2/users/{userId}`.
    pub async fn get_user(&self, user_id: &str) -> Result<UserRecord, Error> {
        self.json(Method::GET, &["users", user_id], None::<&()>, Retry::Idempotent).await
    }

    /// `GET /api/v2/users?email=`: the user with that address, if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, Error> {
        let list: UserList = self.json_query(&["users"], &UserQuery { email: email.into() }).await?;
        Ok(list.users.into_iter().next())
    }

    /// `DELETE /api/v2/users/{userId}`: erases the user.
    pub async fn delete_user(&self, user_id: &str) -> Result<(), Error> {
        self.empty(Method::DELETE, &["users", user_id]).await
    }

    /// `POST /api/v2/users/{userId}/sessions/revoke`: revokes every session key of the user.
    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<RevokedSessionsResponse, Error> {
        // Idempotent: a repeat revokes what is left, which is nothing.
        self.json(Method::POST, &["users", user_id, "sessions", "revoke"], None::<&()>, Retry::Idempotent).await
    }

    // ---- organizations and lookup --------------------------------------

    /// `POST /api/v2/organizations`. Not retried (a repeat would create a second one).
    pub async fn create_organization(
        &self,
        request: &CreateOrganizationRequest,
    ) -> Result<CreateOrganizationResponse, Error> {
        self.json(Method::POST, &["organizations"], Some(request), Retry::Never).await
    }

    /// `GET /api/v2/organizations/{organizationId}`, with its members.
    pub async fn get_organization(&self, organization_id: &str) -> Result<OrganizationView, Error> {
        self.json(Method::GET, &["organizations", organization_id], None::<&()>, Retry::Idempotent).await
    }

    /// `PUT /api/v2/organizations/{organizationId}/members/{userId}`: adds a member or sets their role.
    pub async fn set_member_role(&self, organization_id: &str, user_id: &str, role: &str) -> Result<MemberView, Error> {
        let body = SetRoleRequest { role: role.into() };
        let path = ["organizations", organization_id, "members", user_id];
        self.json(Method::PUT, &path, Some(&body), Retry::Idempotent).await
    }

    /// `DELETE /api/v2/organizations/{organizationId}/members/{userId}`.
    pub async fn remove_member(&self, organization_id: &str, user_id: &str) -> Result<(), Error> {
        self.empty(Method::DELETE, &["organizations", organization_id, "members", user_id]).await
    }

    /// `POST /api/v2/lookup`. A lookup grants nothing: authorize requests
    /// against the signed-in user's own memberships, never against this.
    pub async fn lookup(&self, request: &LookupRequest) -> Result<LookupResponse, Error> {
        self.json(Method::POST, &["lookup"], Some(request), Retry::Idempotent).await
    }

    // ---- events and webhooks -------------------------------------------

    /// `GET /api/v2/events`: a page of events, newest first.
    pub async fn list_events(&self, query: &EventListQuery) -> Result<EventPage, Error> {
        self.json_query(&["events"], query).await
    }

    /// `POST /api/v2/webhooks`: registers an endpoint; the secret is shown this once.
    pub async fn create_webhook(&self, request: &CreateWebhookRequest) -> Result<WebhookWithSecret, Error> {
        self.json(Method::POST, &["webhooks"], Some(request), Retry::Never).await
    }

    /// `GET /api/v2/webhooks`.
    pub async fn list_webhooks(&self) -> Result<WebhookList, Error> {
        self.json(Method::GET, &["webhooks"], None::<&()>, Retry::Idempotent).await
    }

    /// `GET /api/v2/webhooks/{webhookId}`.
    pub async fn get_webhook(&self, webhook_id: &str) -> Result<WebhookRecord, Error> {
        self.json(Method::GET, &["webhooks", webhook_id], None::<&()>, Retry::Idempotent).await
    }

    /// `DELETE /api/v2/webhooks/{webhookId}`.
    pub async fn delete_webhook(&self, webhook_id: &str) -> Result<(), Error> {
        self.empty(Method::DELETE, &["webhooks", webhook_id]).await
    }

    /// `POST /api/v2/webhooks/{webhookId}/rotate-secret`: a new secret; the
    /// previous one keeps signing beside it for 24 hours. Not retried (a
    /// repeat would rotate twice and lose the secret of the first).
    pub async fn rotate_webhook_secret(&self, webhook_id: &str) -> Result<WebhookWithSecret, Error> {
        self.json(Method::POST, &["webhooks", webhook_id, "rotate-secret"], None::<&()>, Retry::Never).await
    }

    /// `POST /api/v2/webhooks/{webhookId}/enable`: turns a disabled endpoint back on.
    pub async fn enable_webhook(&self, webhook_id: &str) -> Result<WebhookRecord, Error> {
        self.json(Method::POST, &["webhooks", webhook_id, "enable"], None::<&()>, Retry::Idempotent).await
    }

    /// `GET /api/v2/webhooks/{webhookId}/deliveries`: recent deliveries and their attempts.
    pub async fn list_deliveries(&self, webhook_id: &str) -> Result<DeliveryList, Error> {
        self.json(Method::GET, &["webhooks", webhook_id, "deliveries"], None::<&()>, Retry::Idempotent).await
    }

    /// `POST /api/v2/webhooks/{webhookId}/deliveries/{eventId}/retry`: one more attempt of a failed delivery.
    pub async fn retry_delivery(&self, webhook_id: &str, event_id: &str) -> Result<(), Error> {
        let path = ["webhooks", webhook_id, "deliveries", event_id, "retry"];
        let response = self.send(Method::POST, &path, None::<&()>, Retry::Never).await?;
        check(response).await.map(drop)
    }

    // ---- operations ----------------------------------------------------

    /// `GET /api/v2/project`: this key's project, and the `aud` and `iss`
    /// its result JWTs carry.
    pub async fn project(&self) -> Result<ProjectView, Error> {
        self.json(Method::GET, &["project"], None::<&()>, Retry::Idempotent).await
    }

    /// `GET /.well-known/jwks.json`: the public keys result JWTs are signed with.
    pub async fn jwks(&self) -> Result<Jwks, Error> {
        let url = self.url_at(&[".well-known", "jwks.json"]);
        let response = self.attempts(Retry::Idempotent, || self.http.get(url.clone())).await?;
        decode(check(response).await?).await
    }

    /// `GET /healthz`: `Ok` while the process is up.
    pub async fn health(&self) -> Result<HealthResponse, Error> {
        let url = self.url_at(&["healthz"]);
        let response = self.attempts(Retry::Idempotent, || self.http.get(url.clone())).await?;
        decode(check(response).await?).await
    }

    /// `GET /api/v2/openapi.json`: the OpenAPI 3.1 document of the server's API.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        let url = self.api_url(&["openapi.json"]);
        let response = self.attempts(Retry::Idempotent, || self.http.get(url.clone())).await?;
        decode(check(response).await?).await
    }

    /// `GET /readyz`: `Ok` when passgate can serve (its database reachable).
    pub async fn ready(&self) -> Result<HealthResponse, Error> {
        let url = self.url_at(&["readyz"]);
        let response = self.attempts(Retry::Never, || self.http.get(url.clone())).await?;
        decode(check(response).await?).await
    }

    // ---- plumbing ------------------------------------------------------

    /// The URL of a path under the base URL, each segment percent-encoded
    /// (an id with a `/` or `?` stays one segment, never a new path).
    fn url_at(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn api_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v2"];
        all.extend_from_slice(segments);
        self.url_at(&all)
    }

    async fn json<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
        retry: Retry,
    ) -> Result<R, Error> {
        let response = self.send(method, path, body, retry).await?;
        decode(check(response).await?).await
    }

    async fn json_query<Q: Serialize, R: DeserializeOwned>(&self, path: &[&str], query: &Q) -> Result<R, Error> {
        let url = self.api_url(path);
        let response = self
            .attempts(Retry::Idempotent, || self.http.get(url.clone()).bearer_auth(self.key.expose()).query(query))
            .await?;
        decode(check(response).await?).await
    }

    async fn empty(&self, method: Method, path: &[&str]) -> Result<(), Error> {
        let response = self.send(method, path, None::<&()>, Retry::Idempotent).await?;
        check(response).await.map(drop)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
        retry: Retry,
    ) -> Result<reqwest::Response, Error> {
        let url = self.api_url(path);
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| Error::Decode(format!("request body: {e}")))?),
            None => None,
        };
        let key = match &retry {
            Retry::WithKey(k) => Some(k.clone()),
            _ => None,
        };
        self.attempts(retry, || {
            let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(self.key.expose());
            if let Some(k) = &key {
                request = request.header("Idempotency-Key", k);
            }
            if let Some(b) = &body {
                request = request.header(header::CONTENT_TYPE, "application/json").body(b.clone());
            }
            request
        })
        .await
    }

    async fn stamped<R: DeserializeOwned>(&self, action: &str, request: &StampedRequest) -> Result<R, Error> {
        let url = self.api_url(&["session", action]);
        // No secret key: these endpoints take the stamp alone.
        let response = self
            .attempts(Retry::Never, || {
                self.http
                    .post(url.clone())
                    .header("X-Stamp", &request.stamp)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(request.body.clone())
            })
            .await?;
        decode(check(response).await?).await
    }

    /// Sends, and repeats where `retry` allows after a failure that may be
    /// transient: a connection error, a timeout, `502`, `503` or `504`.
    async fn attempts(
        &self,
        retry: Retry,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let tries = match retry {
            Retry::Never => 0,
            Retry::Idempotent | Retry::WithKey(_) => self.max_retries,
        };
        let mut attempt = 0;
        loop {
            let result = build().send().await;
            let transient = match &result {
                Ok(r) => matches!(
                    r.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            if !transient || attempt >= tries {
                return result.map_err(Error::from_reqwest);
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// 100 ms, 200 ms, 400 ms, … (at most 2 s), each with up to 50% added at
/// random so that many clients retrying at once spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(5).saturating_sub(1)).min(2_000);
    let jitter = u64::from(u16::from_le_bytes(crate::random::bytes::<2>())) % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

fn new_idempotency_key() -> String {
    crate::random::token::<16>()
}

/// A 2xx response passes; anything else becomes [`Error::Api`] from its
/// problem document (or a synthetic one when the body is not a problem).
async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let request_id =
        response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let bytes = response.bytes().await.map_err(Error::from_reqwest)?;
    let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail: format!("passgate answered {status} without a problem document"),
        code: if status.is_server_error() { "internal_error" } else { "invalid_request" }.into(),
        request_id,
        used_at: None,
        expired_at: None,
    });
    Err(Error::Api(Box::new(ApiError::new(status.as_u16(), problem, retry_after))))
}

async fn decode<R: DeserializeOwned>(response: reqwest::Response) -> Result<R, Error> {
    let bytes = response.bytes().await.map_err(Error::from_reqwest)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        let client = Client::new("https://auth.example.com/passgate/", SecretKey::new("sk_test_x"))
            .unwrap_or_else(|e| panic!("{e}"));
        let url = client.api_url(&["users", "usr_1/../../admin?x=1"]);
        assert_eq!(url.as_str(), "https://auth.example.com/passgate/api/v2/users/usr_1%2F..%2F..%2Fadmin%3Fx=1");
    }

    #[test]
    fn base_urls_must_be_http() {
        for bad in ["ftp://x.example", "not a url", "mailto:a@b.example"] {
            assert!(matches!(Client::new(bad, SecretKey::new("k")), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..10 {
            let base = 100u64 * (1 << (attempt.min(5) - 1));
            let wait = backoff(attempt).as_millis() as u64;
            assert!(wait >= base.min(2_000) && wait <= base.min(2_000) * 3 / 2, "{attempt}: {wait}");
        }
    }

    #[test]
    fn the_client_never_shows_its_key() {
        let client =
            Client::new("http://127.0.0.1:1", SecretKey::new("sk_test_TopSecret")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{client:?}").contains("TopSecret"));
    }
}
