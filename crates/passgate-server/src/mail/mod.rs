//! Email: what a queued message holds ([`EmailPayload`]), how it becomes
//! text and HTML ([`templates`]), how it leaves ([`transport`]), and the
//! durable outbox worker that drives it ([`outbox`]).

pub mod outbox;
pub mod templates;
pub mod transport;

use passgate_core::secret::{Purpose, SecretError, ServerSecret};
use serde::{Deserialize, Serialize};

/// The content of one queued email. It holds the link (and code), so it is
/// sealed under the server secret before it reaches the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmailPayload {
    /// Template set: `login` for now.
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
}

impl EmailPayload {
    pub fn seal(&self, secret: &ServerSecret) -> Vec<u8> {
        // Serialising a struct of strings cannot fail.
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        secret.seal(Purpose::Outbox, &json)
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

/// An email ready to send.
#[derive(Debug, Clone)]
pub struct RenderedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}
