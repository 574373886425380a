//! Magic-link logins: start (policy, limits, idempotency, the token and
//! code, the sealed email and its hand-off to the outbox), verify (and the
//! signed JWT), and the state of a login.

use passgate_api_types::StartLoginResponse;
use passgate_core::client::{ClientIp, Locale, LoginState, UserAgent};
use passgate_core::code::LoginCode;
use passgate_core::email::EmailAddress;
use passgate_core::jwt::{JwtSigner, LoginClaims};
use passgate_core::limits::{JWT_TTL_SECONDS, PER_RECIPIENT_WINDOW_SECONDS};
use passgate_core::login::VerifyFailure;
use passgate_core::pkce::{CodeChallenge, CodeVerifier};
use passgate_core::policy::EmailPolicy;
use passgate_core::redirect::ValidationUrl;
use passgate_core::secret::Purpose;
use passgate_core::token::LinkToken;
use passgate_core::{EmailId, LoginId, Timestamp, UserId};
use passgate_store::{
    AuthMethod, IdempotencyClaim, LoginView, NewLogin, Project, SendLimits, StartOutcome, Store, User, VerifiedLogin,
    VerifyByCode, VerifyByToken, VerifyOutcome,
};

use super::ServiceError;
use crate::app::AppState;
use crate::mail::EmailPayload;
use crate::mail::outbox::PreparedEmail;

/// A start, parsed.
#[derive(Debug)]
pub struct StartLogin {
    pub email: EmailAddress,
    pub validation_url: ValidationUrl,
    pub state: Option<LoginState>,
    pub code_challenge: Option<CodeChallenge>,
    pub include_code: bool,
    pub ip_address: Option<ClientIp>,
    pub user_agent: Option<UserAgent>,
    pub locale: Option<Locale>,
}

/// An `Idempotency-Key` and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// How a start was answered.
pub type Started = Answered<StartLoginResponse>;

/// How a request that sends a link email (a start, an invite) was answered.
#[derive(Debug)]
pub enum Answered<T> {
    /// Stored; the email is on its way.
    Accepted(T),
    /// A repeat of an earlier request with the same `Idempotency-Key`:
    /// the first answer, as it was given.
    Replayed { status: u16, body: String },
}

/// The project's policy on who may receive its emails, applied before
/// anything is stored or sent (starts, invites, organizations' members).
pub fn check_policy(project: &Project, email: &EmailAddress) -> Result<(), ServiceError> {
    let policy = EmailPolicy {
        allowed_domains: project.settings.allowed_domains.clone(),
        allowed_emails: project.settings.allowed_emails.clone(),
    };
    if policy.allows(email) { Ok(()) } else { Err(ServiceError::EmailNotAllowed) }
}

/// The send limits a start (or an invite) of the project obeys: the
/// project's settings, over fixed windows.
pub fn send_limits(project: &Project) -> SendLimits {
    SendLimits {
        per_recipient: project.settings.emails_per_recipient,
        per_recipient_window_seconds: PER_RECIPIENT_WINDOW_SECONDS,
        per_project_per_minute: project.settings.emails_per_minute,
        per_ip_per_minute: project.settings.starts_per_ip,
    }
}

/// What to store for repeats of a request with an `Idempotency-Key`.
pub fn idempotency_claim(
    idempotency: Option<Idempotency>,
    status: u16,
    response: &impl serde::Serialize,
) -> Result<Option<IdempotencyClaim>, ServiceError> {
    idempotency
        .map(|Idempotency { key, fingerprint }| {
            let response_body = serde_json::to_string(response).map_err(ServiceError::internal)?;
            Ok(IdempotencyClaim { key, fingerprint, response_status: status, response_body })
        })
        .transpose()
}

/// What the store made of a start (or an invite): a stored one's email goes
/// to this instance's sender; a refusal becomes the service's error.
pub fn settle<S: Store, T>(
    app: &AppState<S>,
    outcome: StartOutcome,
    email: PreparedEmail,
    accepted: T,
) -> Result<Answered<T>, ServiceError> {
    match outcome {
        StartOutcome::Started => {
            email.dispatch();
            Ok(Answered::Accepted(accepted))
        }
        StartOutcome::Replayed { status, body } => Ok(Answered::Replayed { status, body }),
        StartOutcome::IdempotencyConflict => Err(ServiceError::IdempotencyConflict),
        StartOutcome::RateLimited { limit, retry_after_seconds } => {
            app.metrics.rate_limited(limit);
            Err(ServiceError::RateLimited { limit, retry_after_seconds })
        }
    }
}

/// The content of an email that carries a link: `template`'s set, the
/// project's app name, the link (`validationUrl` with the token) and how
/// long it lives.
pub fn link_payload(
    template: &str,
    project: &Project,
    to: &EmailAddress,
    validation_url: &ValidationUrl,
    token: &LinkToken,
    ttl_seconds: i64,
) -> EmailPayload {
    EmailPayload {
        template: template.to_string(),
        project_id: project.id.to_string(),
        to: to.to_string(),
        app_name: project.app_name().to_string(),
        link: validation_url.link_with_token(token.expose()),
        expires_minutes: (ttl_seconds + 59) / 60,
        ..EmailPayload::default()
    }
}

/// Seals an email's content and prepares its hand-off to the outbox (it is
/// queued with the login that carries it, in the store's transaction).
pub fn prepare_email<S: Store>(
    app: &AppState<S>,
    project: &Project,
    login_id: &LoginId,
    to: &EmailAddress,
    payload: &EmailPayload,
) -> Result<PreparedEmail, ServiceError> {
    let sealed = payload.seal(&app.secret).map_err(ServiceError::internal)?;
    Ok(app.outbox.prepare(EmailId::generate(), &project.id, Some(login_id), to.as_str(), sealed))
}

/// Starts a login: policy first, then the store applies the limits and
/// idempotency and stores the login with its queued email in one
/// transaction; once committed, the email goes to this instance's sender.
pub async fn start<S: Store>(
    app: &AppState<S>,
    project: &Project,
    request: StartLogin,
    idempotency: Option<Idempotency>,
) -> Result<Started, ServiceError> {
    check_policy(project, &request.email)?;

    let now = app.clock.now();
    let ttl = project.settings.link_ttl_seconds;
    let expires_at = now.plus_seconds(ttl);
    let login_id = LoginId::generate();
    let token = LinkToken::generate();
    let code = request.include_code.then(LoginCode::generate);
    let payload = EmailPayload {
        code: code.as_ref().map(|c| c.expose().to_string()),
        locale: request.locale.map(Locale::into_string),
        ..link_payload("login", project, &request.email, &request.validation_url, &token, ttl)
    };
    let response = StartLoginResponse { login_id: login_id.to_string(), expires_at: expires_at.to_rfc3339() };
    let email = prepare_email(app, project, &login_id, &request.email, &payload)?;
    let login = NewLogin {
        id: login_id,
        project_id: project.id.clone(),
        email: request.email.into_string(),
        token_hash: token.hash().0,
        code_hash: code.as_ref().map(|c| app.secret.keyed_hash(Purpose::LoginCode, c.expose().as_bytes())),
        code_challenge: request.code_challenge.map(CodeChallenge::into_string),
        state: request.state.map(LoginState::into_string),
        validation_url: request.validation_url.as_str().to_string(),
        ip_address: request.ip_address.map(ClientIp::to_text),
        ip_network: request.ip_address.map(ClientIp::limit_key),
        user_agent: request.user_agent.map(UserAgent::into_string),
        created_at: now,
        expires_at,
        email_id: email.id().clone(),
        email_payload_sealed: email.sealed().to_vec(),
        email_lease: email.lease(),
        limits: send_limits(project),
        idempotency: idempotency_claim(idempotency, 202, &response)?,
        invite_id: None,
    };
    let outcome = app.store.start_login(login).await?;
    let answered = settle(app, outcome, email, response)?;
    if matches!(answered, Answered::Accepted(_)) {
        app.metrics.login_started();
    }
    Ok(answered)
}

/// What a verify presents.
#[derive(Debug)]
pub enum Proof {
    /// The emailed link's token.
    Token(LinkToken),
    /// A login id and its emailed code.
    Code { login_id: LoginId, code: LoginCode },
    /// A login id that is not one (malformed): it names no login.
    UnknownLogin,
}

/// A verified login and its signed result.
#[derive(Debug)]
pub struct Verified {
    pub login: VerifiedLogin,
    pub jwt: String,
}

/// Verifies a login once, and signs its JWT.
pub async fn verify<S: Store>(
    app: &AppState<S>,
    project: &Project,
    proof: Proof,
    code_verifier: Option<CodeVerifier>,
) -> Result<Verified, ServiceError> {
    let verifier_challenge = code_verifier.map(|v| v.challenge().into_string());
    let now = app.clock.now();
    // Load the signing key first: a login must never be consumed and then
    // fail to produce its JWT.
    let signer = app.keys.signer(&app.store, &app.secret, now).await?;
    let new_user_id = UserId::generate();
    let outcome = match proof {
        Proof::Token(token) => {
            let req = VerifyByToken {
                project_id: project.id.clone(),
                token_hash: token.hash().0,
                verifier_challenge,
                now,
                new_user_id,
            };
            app.store.verify_by_token(req).await?
        }
        Proof::Code { login_id, code } => {
            let req = VerifyByCode {
                project_id: project.id.clone(),
                login_id,
                code_hash_candidates: app.secret.keyed_hash_candidates(Purpose::LoginCode, code.expose().as_bytes()),
                verifier_challenge,
                now,
                new_user_id,
            };
            app.store.verify_by_code(req).await?
        }
        Proof::UnknownLogin => VerifyOutcome::Failed(VerifyFailure::Invalid),
    };
    let login = match outcome {
        VerifyOutcome::Verified(login) => login,
        VerifyOutcome::Failed(failure) => {
            app.metrics.verify_failed(failure);
            return Err(match failure {
                VerifyFailure::CodesBlocked { until } => ServiceError::CodesBlocked {
                    retry_after_seconds: ((until.millis() - now.millis() + 999) / 1000).max(1),
                },
                other => ServiceError::Verify(other),
            });
        }
    };
    app.metrics.login_verified();
    let jwt = sign_jwt(&signer, &app.public_url, &login.user, login.method, now)?;
    Ok(Verified { login, jwt })
}

/// The signed result of a sign-in: who, how, for which project, by whom.
pub fn sign_jwt(
    signer: &JwtSigner,
    issuer: &str,
    user: &User,
    method: AuthMethod,
    now: Timestamp,
) -> Result<String, ServiceError> {
    let claims = LoginClaims {
        iss: issuer.to_string(),
        aud: user.project_id.to_string(),
        sub: user.id.to_string(),
        email: user.email.clone(),
        email_verified: true,
        amr: vec![method.amr().to_string()],
        iat: now.seconds(),
        exp: now.seconds() + JWT_TTL_SECONDS,
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    signer.sign(&claims).map_err(ServiceError::internal)
}

/// The state of one of the project's logins.
pub async fn status<S: Store>(
    app: &AppState<S>,
    project: &Project,
    login_id: &LoginId,
) -> Result<LoginView, ServiceError> {
    app.store.get_login(&project.id, login_id, app.clock.now()).await?.ok_or(ServiceError::NotFound)
}
