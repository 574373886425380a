//! Email one-time codes: send (policy, the code, the sealed email and its
//! hand-off to the outbox) and verify (the signed JWT and, with a target
//! key, a session credential only the browser can open).

use passgate_api_types::{AuthSessionView, SendOtpResponse};
use passgate_core::client::{ClientIp, UserAgent};
use passgate_core::credential::{SessionKeyPair, TargetPublicKey, credential_bundle};
use passgate_core::email::EmailAddress;
use passgate_core::otp::{CodeShape, OTP_LIVE_CODES, OTP_SEND_WINDOW_SECONDS, OtpCode, OtpFailure};
use passgate_core::secret::Purpose;
use passgate_core::{EmailId, OtpId, SessionId, UserId};
use passgate_store::{
    AuthMethod, NewOtp, OtpLimits, OtpVerifyOutcome, Project, SessionOffer, Store, User, VerifiedOtp, VerifyOtp,
};

use super::ServiceError;
use super::logins::{Answered, Idempotency, check_policy, idempotency_claim, settle, sign_jwt};
use crate::app::AppState;
use crate::mail::EmailPayload;

/// A send, parsed.
#[derive(Debug)]
pub struct SendOtp {
    pub email: EmailAddress,
    pub shape: CodeShape,
    pub ttl_seconds: i64,
    pub app_name: Option<String>,
    pub target_public_key: Option<TargetPublicKey>,
    pub ip_address: Option<ClientIp>,
    pub user_agent: Option<UserAgent>,
}

/// The limits a send of the project obeys: the project's settings, over a
/// fixed window.
pub fn otp_limits(project: &Project) -> OtpLimits {
    OtpLimits {
        sends_per_email: project.settings.otp_sends_per_email,
        window_seconds: OTP_SEND_WINDOW_SECONDS,
        live_codes: OTP_LIVE_CODES,
        per_project_per_minute: project.settings.emails_per_minute,
    }
}

/// Sends a code: policy first, then the store applies the block, the
/// limits and idempotency and stores the code (keyed-hashed) with its
/// queued email in one transaction; once committed, the email goes to
/// this instance's sender.
pub async fn send<S: Store>(
    app: &AppState<S>,
    project: &Project,
    request: SendOtp,
    idempotency: Option<Idempotency>,
) -> Result<Answered<SendOtpResponse>, ServiceError> {
    check_policy(project, &request.email)?;
    let now = app.clock.now();
    let expires_at = now.plus_seconds(request.ttl_seconds);
    let otp_id = OtpId::generate();
    let code = OtpCode::generate(request.shape);
    let payload = EmailPayload {
        template: "otp".to_string(),
        project_id: project.id.to_string(),
        to: request.email.to_string(),
        app_name: request.app_name.unwrap_or_else(|| project.app_name().to_string()),
        code: Some(code.expose().to_string()),
        expires_minutes: (request.ttl_seconds + 59) / 60,
        ..EmailPayload::default()
    };
    let sealed = payload.seal(&app.secret).map_err(ServiceError::internal)?;
    let email = app.outbox.prepare(EmailId::generate(), &project.id, None, request.email.as_str(), sealed);
    let response = SendOtpResponse { otp_id: otp_id.to_string(), expires_at: expires_at.to_rfc3339() };
    let otp = NewOtp {
        id: otp_id,
        project_id: project.id.clone(),
        email: request.email.into_string(),
        code_hash: app.secret.keyed_hash(Purpose::OtpCode, code.expose().as_bytes()),
        target_public_key: request.target_public_key.as_ref().map(TargetPublicKey::to_hex),
        ip_address: request.ip_address.map(ClientIp::to_text),
        user_agent: request.user_agent.map(UserAgent::into_string),
        created_at: now,
        expires_at,
        email_id: email.id().clone(),
        email_payload_sealed: email.sealed().to_vec(),
        email_lease: email.lease(),
        limits: otp_limits(project),
        idempotency: idempotency_claim(idempotency, 202, &response)?,
    };
    let outcome = app.store.send_otp(otp).await?;
    settle(app, outcome, email, response)
}

/// A verify, parsed.
#[derive(Debug)]
pub struct VerifyCode {
    /// `None` for an id that is not even shaped like one: it names no code.
    pub otp_id: Option<OtpId>,
    pub code: OtpCode,
    pub target_public_key: Option<TargetPublicKey>,
    pub session_ttl_seconds: i64,
}

/// A verified code, its signed result and, with a target key, the sealed
/// session credential.
#[derive(Debug)]
pub struct VerifiedCode {
    pub user: User,
    pub is_new_user: bool,
    pub jwt: String,
    pub auth_session: Option<AuthSessionView>,
}

/// Verifies a code once. When a target key is in play, a fresh session
/// key pair is minted and its private half sealed to the target key
/// *before* the store is asked, so nothing can fail between the code's use
/// and the answer; the private half is dropped as soon as it is sealed.
/// With a target key given here that happens up front; when none is given
/// but the code was sent with one (which only the store knows), the store
/// answers with that key without writing anything and is asked again — so
/// a verify without a session credential never pays for a key pair.
pub async fn verify<S: Store>(
    app: &AppState<S>,
    project: &Project,
    request: VerifyCode,
) -> Result<VerifiedCode, ServiceError> {
    let now = app.clock.now();
    let Some(otp_id) = request.otp_id else {
        return Err(ServiceError::Otp(OtpFailure::Invalid));
    };
    // Load the signing key first: a code must never be consumed and then
    // fail to produce its JWT.
    let signer = app.keys.signer(&app.store, &app.secret, now).await?;
    let session_ttl = request.session_ttl_seconds;
    let sealed_for = |target: &TargetPublicKey| -> Result<(SessionOffer, String), ServiceError> {
        let key = SessionKeyPair::generate();
        let bundle = credential_bundle(target, &key).map_err(ServiceError::internal)?;
        let offer = SessionOffer {
            id: SessionId::generate(),
            public_key: key.public_key_hex(),
            expires_at: now.plus_seconds(session_ttl),
        };
        Ok((offer, bundle))
    };
    let mut bundle = None;
    let mut req = VerifyOtp {
        project_id: project.id.clone(),
        otp_id,
        code_hash_candidates: app.secret.keyed_hash_candidates(Purpose::OtpCode, request.code.expose().as_bytes()),
        target_public_key: request.target_public_key.as_ref().map(TargetPublicKey::to_hex),
        session: None,
        now,
        new_user_id: UserId::generate(),
    };
    if let Some(target) = &request.target_public_key {
        let (offer, sealed) = sealed_for(target)?;
        req.session = Some(offer);
        bundle = Some(sealed);
    }
    let verified = loop {
        match app.store.verify_otp(req.clone()).await? {
            OtpVerifyOutcome::Verified(verified) => break verified,
            OtpVerifyOutcome::Failed(failure) => return Err(ServiceError::Otp(failure)),
            OtpVerifyOutcome::NeedsSessionKey { target_public_key } if bundle.is_none() => {
                let target = TargetPublicKey::parse_hex(&target_public_key).map_err(ServiceError::internal)?;
                let (offer, sealed) = sealed_for(&target)?;
                req.session = Some(offer);
                bundle = Some(sealed);
            }
            OtpVerifyOutcome::NeedsSessionKey { .. } => return Err(ServiceError::internal(NoOffer)),
        }
    };
    let VerifiedOtp { user, is_new_user, session, .. } = verified;
    let auth_session = match session {
        None => None,
        Some(session) => Some(AuthSessionView {
            session_id: session.id.into_string(),
            user_id: user.id.to_string(),
            expires_at: session.expires_at.to_rfc3339(),
            credential_bundle: bundle.ok_or_else(|| ServiceError::internal(NoOffer))?,
        }),
    };
    let jwt = sign_jwt(&signer, &app.public_url, &user, AuthMethod::EmailCode, now)?;
    app.metrics.login_verified();
    Ok(VerifiedCode { user, is_new_user, jwt, auth_session })
}

/// The store asked for a session key twice, or registered one it was not
/// offered: a bug, never an answer to the caller.
#[derive(Debug, thiserror::Error)]
#[error("the store and the OTP service disagree about the session key")]
struct NoOffer;
