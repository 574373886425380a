//! Email one-time codes: `POST /api/v2/otp/send`, `POST /api/v2/otp/verify`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::UserView;

/// `POST /api/v2/otp/send`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendOtpRequest {
    /// The end user's email address; normalised to its canonical form.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 6–9 characters (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_length: Option<u8>,
    /// Crockford Base32 (`0-9A-Z` without I, L, O, U) instead of digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphanumeric: Option<bool>,
    /// Lifetime in seconds, 60–600 (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// The name the email shows (≤ 128 characters; default: the project's app name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// Hex of a P-256 public key (65-byte uncompressed or 33-byte
    /// compressed): verify then returns a session credential sealed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_public_key: Option<String>,
    /// The end user's IP address as the app saw it (recorded on events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The end user's user agent (≤ 512 characters), recorded on events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendOtpResponse {
    #[schema(example = "otp_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b")]
    pub otp_id: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

/// `POST /api/v2/otp/verify`
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyOtpRequest {
    pub otp_id: String,
    /// What the user typed; hyphens and spaces are ignored, letters in any case.
    pub code: String,
    /// Hex of a P-256 public key; must equal the one given at send, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_public_key: Option<String>,
    /// The session key's lifetime in seconds, 60–86400 (default 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_in: Option<i64>,
}

/// Redacted: the code is a secret.
impl std::fmt::Debug for VerifyOtpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOtpRequest")
            .field("otp_id", &self.otp_id)
            .field("code", &"[REDACTED]")
            .field("target_public_key", &self.target_public_key)
            .field("session_expires_in", &self.session_expires_in)
            .finish()
    }
}

/// A session credential: a fresh P-256 private key sealed to the target
/// key (Turnkey's email-auth bundle format), and the session key it is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSessionView {
    #[schema(example = "ses_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b")]
    pub session_id: String,
    pub user_id: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// base58check(compressed encapsulated key ‖ AES-256-GCM ciphertext);
    /// only the target key's holder can open it.
    pub credential_bundle: String,
}

/// Redacted: the bundle is for the browser alone.
impl std::fmt::Debug for AuthSessionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSessionView")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("credential_bundle", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyOtpResponse {
    pub user: UserView,
    /// EdDSA-signed JWT (`amr: ["email_otp"]`); verify it with `/.well-known/jwks.json`.
    pub jwt: String,
    /// With a `targetPublicKey` (at send or verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_session: Option<AuthSessionView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code and a credential bundle are secrets: a request or response
    /// that reaches a log through `{:?}` shows neither.
    #[test]
    fn debug_output_hides_the_code_and_the_bundle() {
        let request = VerifyOtpRequest {
            otp_id: "otp_1".into(),
            code: "483920".into(),
            target_public_key: None,
            session_expires_in: None,
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("483920") && shown.contains("otp_1"), "{shown}");
        let session = AuthSessionView {
            session_id: "ses_1".into(),
            user_id: "usr_1".into(),
            expires_at: "2026-12-03T00:00:00.000Z".into(),
            credential_bundle: "w99a5xV6A75TfoAUkZn869f".into(),
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("w99a5xV6A75TfoAUkZn869f") && shown.contains("ses_1"), "{shown}");
    }
}
