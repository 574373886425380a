//! Email: what a queued message holds ([`EmailPayload`]), how it becomes
//! text and HTML ([`templates`]), how it leaves ([`transport`]), and the
//! durable outbox worker that drives it ([`outbox`]).

pub mod outbox;
pub mod smtp;
pub mod templates;
pub mod transport;

use passgate_core::secret::{Purpose, SecretError, ServerSecret};
use serde::{Deserialize, Serialize};

/// The content of one queued email. It holds the link (and code), so it is
/// sealed under the server secret before it reaches the database, and its
/// `Debug` shows neither.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmailPayload {
    /// Template set: `login`, `invite` or `otp`.
    pub template: String,
    pub project_id: String,
    pub to: String,
    pub app_name: String,
    pub link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub expires_minutes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// An invite's: who invites, as the app named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// An invite's: the name of the organization it joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

impl std::fmt::Debug for EmailPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailPayload")
            .field("template", &self.template)
            .field("project_id", &self.project_id)
            .field("to", &self.to)
            .field("link", &"[REDACTED]")
            .field("code", &self.code.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl EmailPayload {
    /// The payload as stored: sealed under the server secret. Fails closed:
    /// a payload that cannot be serialised is an error, never an empty email.
    pub fn seal(&self, secret: &ServerSecret) -> Result<Vec<u8>, PayloadError> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).map_err(|_| PayloadError::Malformed)?);
        Ok(secret.seal(Purpose::Outbox, &json))
    }

    pub fn open(secret: &ServerSecret, sealed: &[u8]) -> Result<Self, PayloadError> {
        let json = secret.open(Purpose::Outbox, sealed)?;
        serde_json::from_slice(&json).map_err(|_| PayloadError::Malformed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Sealed(#[from] SecretError),
    #[error("the queued email's content is malformed")]
    Malformed,
}

/// An email ready to send (its body holds the link: no `Debug`).
#[derive(Clone)]
pub struct RenderedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The link and code the body carries, as the dev mailbox shows them.
    pub link: String,
    pub code: Option<String>,
}
