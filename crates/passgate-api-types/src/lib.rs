//! The wire types of passgate's HTTP API (v2): what clients send and get
//! back, shared by the server and the SDK. Field names are camelCase JSON;
//! request types refuse unknown fields so a typo is an error, not a silent
//! default. Error codes are stable: clients switch on them.

mod events;
mod invites;
mod organizations;
mod otp;
mod projects;
mod sessions;
mod users;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use events::*;
pub use invites::*;
pub use organizations::*;
pub use otp::*;
pub use projects::*;
pub use sessions::*;
pub use users::*;

/// `POST /api/v2/auth/start`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartLoginRequest {
    /// The end user's email address; normalised to its canonical form.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Where the emailed link points; must match an allowed redirect URL of the project.
    #[schema(example = "https://app.example.com/auth/callback")]
    pub validation_url: String,
    /// Opaque value (≤ 512 characters) returned by verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// PKCE S256 challenge: base64url(SHA-256(codeVerifier)), 43 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// Also email a 6-digit code for the same login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_code: Option<bool>,
    /// The end user's IP address as the app saw it (enables the per-IP limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The end user's user agent (≤ 512 characters), recorded on events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Preferred language of the email (BCP 47 tag, ≤ 35 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartLoginResponse {
    #[schema(example = "lgn_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b")]
    pub login_id: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

/// `POST /api/v2/auth/verify`: either `token` (plus `codeVerifier` when the
/// login has a PKCE challenge) or `loginId` and `code`.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyLoginRequest {
    /// The 48-character token from the emailed link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The PKCE verifier (43–128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_verifier: Option<String>,
    /// The login whose emailed code is given (with `code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    /// The 6-digit code from the email (with `loginId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Redacted: the token, verifier and code are secrets.
impl std::fmt::Debug for VerifyLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("VerifyLoginRequest")
            .field("token", &shown(&self.token))
            .field("code_verifier", &shown(&self.code_verifier))
            .field("login_id", &self.login_id)
            .field("code", &shown(&self.code))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub created_at: String,
    /// True when this verify created the user.
    pub is_new_user: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyLoginResponse {
    pub user: UserView,
    /// EdDSA-signed JWT; verify it with `/.well-known/jwks.json`.
    pub jwt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the token was an invite's: the invite, with its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<AcceptedInviteView>,
}

/// Where a login's email stands: `queued` → `sent`, or `queued` →
/// `retrying` (after a failed attempt) → `sent` | `failed` (given up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailDeliveryStatus {
    Queued,
    Sent,
    Retrying,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailDeliveryView {
    pub status: EmailDeliveryStatus,
    /// Delivery attempts made so far.
    pub attempts: i64,
    /// Short category and SMTP reply code of the last failure, e.g. `recipient_rejected (550)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Where a login attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginStatus {
    /// Sent and not yet used; still valid.
    Pending,
    /// Used (by its link or its code).
    Verified,
    /// Not used before it expired.
    Expired,
    /// Made unusable by too many failed attempts.
    Burned,
}

/// `GET /api/v2/auth/logins/{loginId}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginStatusResponse {
    pub login_id: String,
    pub status: LoginStatus,
    pub email: EmailDeliveryView,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `urn:passgate:error:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code; see [`ErrorCode`].
    pub code: String,
    pub request_id: String,
    /// With `token_used`: when the token was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
    /// With `token_expired`: when the token expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
}

/// Every error code the API returns, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    KeyRevoked,
    NotFound,
    MethodNotAllowed,
    MisdirectedRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidEmail,
    ValidationUrlNotAllowed,
    EmailNotAllowed,
    RateLimited,
    IdempotencyKeyReused,
    InvalidTokenFormat,
    TokenInvalid,
    TokenExpired,
    TokenUsed,
    TokenRevoked,
    TokenBurned,
    CodeVerifierMismatch,
    CodeInvalid,
    InviteAccepted,
    OtpInvalid,
    OtpExpired,
    OtpUsed,
    OtpLocked,
    TargetPublicKeyMismatch,
    StampInvalid,
    StampReplayed,
    SessionInvalid,
    WebhookUrlNotAllowed,
    WebhookLimitReached,
    WebhookDeliveryPending,
    NotReady,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 36] = [
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::KeyRevoked,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::MisdirectedRequest,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::InvalidEmail,
        Self::ValidationUrlNotAllowed,
        Self::EmailNotAllowed,
        Self::RateLimited,
        Self::IdempotencyKeyReused,
        Self::InvalidTokenFormat,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::TokenUsed,
        Self::TokenRevoked,
        Self::TokenBurned,
        Self::CodeVerifierMismatch,
        Self::CodeInvalid,
        Self::InviteAccepted,
        Self::OtpInvalid,
        Self::OtpExpired,
        Self::OtpUsed,
        Self::OtpLocked,
        Self::TargetPublicKeyMismatch,
        Self::StampInvalid,
        Self::StampReplayed,
        Self::SessionInvalid,
        Self::WebhookUrlNotAllowed,
        Self::WebhookLimitReached,
        Self::WebhookDeliveryPending,
        Self::NotReady,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::KeyRevoked => "key_revoked",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MisdirectedRequest => "misdirected_request",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidEmail => "invalid_email",
            Self::ValidationUrlNotAllowed => "validation_url_not_allowed",
            Self::EmailNotAllowed => "email_not_allowed",
            Self::RateLimited => "rate_limited",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidTokenFormat => "invalid_token_format",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenUsed => "token_used",
            Self::TokenRevoked => "token_revoked",
            Self::TokenBurned => "token_burned",
            Self::CodeVerifierMismatch => "code_verifier_mismatch",
            Self::CodeInvalid => "code_invalid",
            Self::InviteAccepted => "invite_accepted",
            Self::OtpInvalid => "otp_invalid",
            Self::OtpExpired => "otp_expired",
            Self::OtpUsed => "otp_used",
            Self::OtpLocked => "otp_locked",
            Self::TargetPublicKeyMismatch => "target_public_key_mismatch",
            Self::StampInvalid => "stamp_invalid",
            Self::StampReplayed => "stamp_replayed",
            Self::SessionInvalid => "session_invalid",
            Self::WebhookUrlNotAllowed => "webhook_url_not_allowed",
            Self::WebhookLimitReached => "webhook_limit_reached",
            Self::WebhookDeliveryPending => "webhook_delivery_pending",
            Self::NotReady => "not_ready",
            Self::InternalError => "internal_error",
        }
    }

    /// The HTTP status that always goes with this code.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::InvalidEmail
            | Self::ValidationUrlNotAllowed
            | Self::InvalidTokenFormat
            | Self::TargetPublicKeyMismatch
            | Self::WebhookUrlNotAllowed => 400,
            Self::Unauthorized
            | Self::KeyRevoked
            | Self::TokenInvalid
            | Self::TokenExpired
            | Self::TokenUsed
            | Self::TokenRevoked
            | Self::TokenBurned
            | Self::CodeVerifierMismatch
            | Self::CodeInvalid
            | Self::OtpInvalid
            | Self::OtpExpired
            | Self::OtpUsed
            | Self::OtpLocked
            | Self::StampInvalid
            | Self::StampReplayed
            | Self::SessionInvalid => 401,
            Self::EmailNotAllowed => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::MisdirectedRequest => 421,
            Self::RequestTimeout => 408,
            Self::IdempotencyKeyReused
            | Self::InviteAccepted
            | Self::WebhookLimitReached
            | Self::WebhookDeliveryPending => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::InternalError => 500,
            Self::NotReady => 503,
        }
    }

    /// A short human title (clients must not switch on it).
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "Invalid request",
            Self::Unauthorized => "Missing or invalid API key",
            Self::KeyRevoked => "API key revoked",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::MisdirectedRequest => "Misdirected request",
            Self::RequestTimeout => "Request timeout",
            Self::PayloadTooLarge => "Request body too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::InvalidEmail => "Invalid email address",
            Self::ValidationUrlNotAllowed => "Validation URL not allowed",
            Self::EmailNotAllowed => "Email address not allowed",
            Self::RateLimited => "Too many requests",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::InvalidTokenFormat => "Malformed token",
            Self::TokenInvalid => "Invalid token",
            Self::TokenExpired => "Token expired",
            Self::TokenUsed => "Token already used",
            Self::TokenRevoked => "Token revoked",
            Self::TokenBurned => "Token burned",
            Self::CodeVerifierMismatch => "PKCE verifier mismatch",
            Self::CodeInvalid => "Invalid code",
            Self::InviteAccepted => "Invite already accepted",
            Self::OtpInvalid => "Invalid code",
            Self::OtpExpired => "Code expired",
            Self::OtpUsed => "Code already used",
            Self::OtpLocked => "Code locked",
            Self::TargetPublicKeyMismatch => "Target public key mismatch",
            Self::StampInvalid => "Invalid stamp",
            Self::StampReplayed => "Stamp replayed",
            Self::SessionInvalid => "Invalid session",
            Self::WebhookUrlNotAllowed => "Webhook URL not allowed",
            Self::WebhookLimitReached => "Too many webhook endpoints",
            Self::WebhookDeliveryPending => "Delivery still pending",
            Self::NotReady => "Not ready",
            Self::InternalError => "Internal error",
        }
    }
}

/// `GET /.well-known/jwks.json`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub kid: String,
    pub x: String,
}

/// `GET /healthz`, `GET /readyz`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_documented_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn verify_requests_never_show_their_secrets_in_debug() {
        let req =
            VerifyLoginRequest { token: Some("T0kenT0ken".into()), code: Some("123456".into()), ..Default::default() };
        let shown = format!("{req:?}");
        assert!(!shown.contains("T0kenT0ken") && !shown.contains("123456"), "{shown}");
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let typo = r#"{"email":"a@b.example","validationUrl":"https://x.example","stat":"x"}"#;
        assert!(serde_json::from_str::<StartLoginRequest>(typo).is_err());
        let invite = r#"{"email":"a@b.example","validationUrl":"https://x.example","expiresIn":60,"metdata":{}}"#;
        assert!(serde_json::from_str::<CreateInviteRequest>(invite).is_err());
        // Nested objects refuse unknown members too.
        let nested = r#"{"name":"Acme","members":[{"email":"a@b.example","role":"x","admin":true}]}"#;
        assert!(serde_json::from_str::<CreateOrganizationRequest>(nested).is_err());
        let fine = r#"{"name":"Acme","members":[{"email":"a@b.example","role":"x"}]}"#;
        assert!(serde_json::from_str::<CreateOrganizationRequest>(fine).is_ok());
        assert!(
            serde_json::from_str::<LookupRequest>(r#"{"filterType":"EMAIL","filterValue":"x","extra":1}"#).is_err()
        );
        assert!(serde_json::from_str::<LookupRequest>(r#"{"filterType":"email","filterValue":"x"}"#).is_err());
        assert!(serde_json::from_str::<SetRoleRequest>(r#"{"role":"x","as":"y"}"#).is_err());
    }
}
