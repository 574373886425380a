//! Plain data that crosses the [`Store`](crate::Store) boundary.

use passgate_core::Timestamp;

/// Operator-controlled settings of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    pub name: String,
    /// The name emails show; `None` means "use the project name".
    pub app_name: Option<String>,
    pub redirect_urls: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub link_ttl_seconds: i64,
    pub emails_per_minute: i64,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub id: String,
    pub settings: ProjectSettings,
    pub is_dev: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub settings: ProjectSettings,
    pub is_dev: bool,
    pub created_at: Timestamp,
}

impl Project {
    pub fn app_name(&self) -> &str {
        self.settings.app_name.as_deref().unwrap_or(&self.settings.name)
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub project_id: String,
    pub key_hash: [u8; 32],
    pub hint: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: String,
    pub project_id: String,
    pub hint: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key_id: String,
    pub key_hash: [u8; 32],
    pub revoked_at: Option<Timestamp>,
    pub project: Project,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub public_key: Vec<u8>,
    /// The private key sealed under the server secret.
    pub private_key_sealed: Vec<u8>,
    pub created_at: Timestamp,
    /// When it stopped being current; `None` for the current key.
    pub retired_at: Option<Timestamp>,
}

/// The send limits that apply to one start, from the project's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub per_recipient: i64,
    pub per_recipient_window_seconds: i64,
    pub per_project_per_minute: i64,
    pub per_ip_per_minute: i64,
}

/// A caller's `Idempotency-Key` and what to answer on a repeat.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 of the request body as parsed (so whitespace and field order
    /// do not matter): the same key with another body is a conflict.
    pub fingerprint: [u8; 32],
    /// The response to store for repeats (it carries no secret).
    pub response_status: u16,
    pub response_body: String,
}

#[derive(Debug, Clone)]
pub struct NewLogin {
    pub id: String,
    pub project_id: String,
    pub email: String,
    pub token_hash: [u8; 32],
    /// Keyed hash of the fallback code, with `includeCode`.
    pub code_hash: Option<[u8; 32]>,
    pub code_challenge: Option<String>,
    pub state: Option<String>,
    pub validation_url: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The queued email: its id and its content sealed under the server
    /// secret (it holds the link, so it is never stored in clear).
    pub email_id: String,
    pub email_payload_sealed: Vec<u8>,
    /// Stores the email already leased, so the starting instance can hand it
    /// straight to its own sender after the commit instead of having its
    /// worker claim it in a second transaction. If that instance dies first,
    /// the lease lapses and any worker claims the email as usual.
    pub email_lease: Option<EmailLease>,
    pub limits: SendLimits,
    pub idempotency: Option<IdempotencyClaim>,
}

/// A lease taken on an email as it is queued (see [`NewLogin::email_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailLease {
    pub owner: String,
    pub until: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Recipient,
    Project,
    IpAddress,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Project => "project",
            Self::IpAddress => "ip_address",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The same `Idempotency-Key` and request were seen before: answer this.
    Replayed {
        status: u16,
        body: String,
    },
    /// The same key came with a different request.
    IdempotencyConflict,
    RateLimited {
        limit: LimitKind,
        retry_after_seconds: i64,
    },
}

/// Verify with a link token.
#[derive(Debug, Clone)]
pub struct VerifyByToken {
    pub project_id: String,
    pub token_hash: [u8; 32],
    /// S256 challenge computed from the presented `codeVerifier`, if any.
    /// Challenges are public values (the app sent one at start), so matching
    /// it in SQL reveals nothing secret.
    pub verifier_challenge: Option<String>,
    pub now: Timestamp,
    /// The id to give the user if this login creates them.
    pub new_user_id: String,
}

/// Verify with a login id and its fallback code.
#[derive(Debug, Clone)]
pub struct VerifyByCode {
    pub project_id: String,
    pub login_id: String,
    /// Keyed hashes of the presented code under the current and (during a
    /// rotation) previous secret; compared in constant time to the stored one.
    pub code_hash_candidates: Vec<[u8; 32]>,
    pub verifier_challenge: Option<String>,
    pub now: Timestamp,
    pub new_user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    EmailLink,
    EmailCode,
}

impl AuthMethod {
    pub fn amr(self) -> &'static str {
        match self {
            Self::EmailLink => "email_link",
            Self::EmailCode => "email_otp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub project_id: String,
    pub email: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogin {
    pub login_id: String,
    pub user: User,
    pub is_new_user: bool,
    pub state: Option<String>,
    pub method: AuthMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// No such token (or login) in this project.
    Invalid,
    Expired {
        expired_at: Timestamp,
    },
    Used {
        used_at: Timestamp,
    },
    Burned,
    /// PKCE verifier missing or wrong; the token is not consumed.
    VerifierMismatch,
    /// Wrong fallback code, or the login has none.
    CodeInvalid,
}

impl VerifyFailure {
    /// The reason recorded on `auth.failed` events (and the API error code).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "token_invalid",
            Self::Expired { .. } => "token_expired",
            Self::Used { .. } => "token_used",
            Self::Burned => "token_burned",
            Self::VerifierMismatch => "code_verifier_mismatch",
            Self::CodeInvalid => "code_invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified(VerifiedLogin),
    Failed(VerifyFailure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    Pending,
    Verified,
    Expired,
    Burned,
}

impl LoginStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Expired => "expired",
            Self::Burned => "burned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    Queued,
    Sent,
    Retrying,
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "sent" => Some(Self::Sent),
            "retrying" => Some(Self::Retrying),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailView {
    pub status: EmailStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginView {
    pub id: String,
    pub status: LoginStatus,
    pub email: EmailView,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub verified_at: Option<Timestamp>,
}

/// A worker's claim on due emails.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub now: Timestamp,
    pub until: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: String,
    pub project_id: String,
    pub login_id: Option<String>,
    pub recipient: String,
    pub payload_sealed: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub enum DeliveryResult {
    Sent {
        at: Timestamp,
    },
    /// Failed; try again at `retry_at`.
    Retry {
        at: Timestamp,
        error: String,
        retry_at: Timestamp,
    },
    /// Failed for good; recorded as an `email.failed` event.
    GaveUp {
        at: Timestamp,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub project_id: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub login_id: Option<String>,
    pub email: Option<String>,
    pub reason: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
}
