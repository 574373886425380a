//! Sending: SMTP through lettre's pooled async transport, and in dev mode
//! the in-memory mailbox behind `/_dev/mailbox`.
//!
//! Failures are reduced to a short category plus the SMTP reply code
//! (`recipient_rejected (550)`), never the relay's free text, which can echo
//! addresses or internals; and to whether retrying can help.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use passgate_core::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::RenderedEmail;

/// Why a send failed, in the words of the API's `lastError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub category: &'static str,
    pub reply_code: Option<u16>,
    /// Retrying cannot help (a 5xx about the recipient or message).
    pub permanent: bool,
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reply_code {
            Some(code) => write!(f, "{} ({code})", self.category),
            None => f.write_str(self.category),
        }
    }
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Maps lettre's error to our categories.
pub fn classify(e: &lettre::transport::smtp::Error) -> DeliveryError {
    let reply_code = e.status().map(u16::from);
    let (category, permanent) = match reply_code {
        // 530/535/534/538: authentication problems are the operator's to fix;
        // keep retrying so a corrected relay still delivers.
        Some(530 | 534 | 535 | 538 | 454) => ("auth_failed", false),
        Some(550 | 551 | 553 | 501) => ("recipient_rejected", true),
        Some(code) if code >= 500 => ("message_rejected", true),
        Some(_) => ("message_rejected", false),
        None if e.is_timeout() => ("timeout", false),
        None if e.is_tls() => ("tls", false),
        None => match io_kind(e) {
            Some(std::io::ErrorKind::TimedOut) => ("timeout", false),
            Some(std::io::ErrorKind::InvalidData) => ("tls", false),
            _ => ("connection_refused", false),
        },
    };
    DeliveryError { category, reply_code, permanent }
}

/// A message as the dev mailbox shows it.
#[derive(Debug, Clone)]
pub struct DevMail {
    pub at: Timestamp,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The last [`DevMailbox::CAPACITY`] emails, newest first (dev mode only).
#[derive(Debug, Clone, Default)]
pub struct DevMailbox(Arc<Mutex<VecDeque<DevMail>>>);

impl DevMailbox {
    pub const CAPACITY: usize = 200;

    pub fn push(&self, mail: DevMail) {
        if let Ok(mut list) = self.0.lock() {
            list.push_front(mail);
            list.truncate(Self::CAPACITY);
        }
    }

    pub fn list(&self) -> Vec<DevMail> {
        self.0.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Where emails go: an SMTP relay, the dev mailbox, or both (dev mode with
/// `PASSGATE_SMTP_URL` set).
#[derive(Clone)]
pub struct Mailer {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    dev: Option<DevMailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("smtp", &self.smtp.is_some()).field("dev", &self.dev.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the SMTP URL is not usable (check scheme, host, port and tls=)")]
pub struct SmtpUrlError;

/// How many SMTP connections (and so concurrent sends) the pool keeps.
pub const SMTP_POOL_SIZE: u32 = 8;

impl Mailer {
    pub fn new(smtp_url: Option<&SecretString>, from: Mailbox, dev: Option<DevMailbox>) -> Result<Self, SmtpUrlError> {
        let smtp = match smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|_| SmtpUrlError)?
                    .timeout(Some(Duration::from_secs(20)))
                    .pool_config(PoolConfig::new().max_size(SMTP_POOL_SIZE).idle_timeout(Duration::from_secs(30)))
                    .build(),
            ),
            None => None,
        };
        Ok(Self { smtp, from, dev })
    }

    pub fn dev_mailbox(&self) -> Option<&DevMailbox> {
        self.dev.as_ref()
    }

    fn build(&self, email: &RenderedEmail) -> Result<Message, DeliveryError> {
        let rejected = DeliveryError { category: "message_rejected", reply_code: None, permanent: true };
        let to: Mailbox = email.to.parse().map_err(|_| rejected.clone())?;
        // A Message-ID on our own domain: some filters score its absence.
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7().simple(), self.from.email.domain());
        Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            // RFC 3834: an automatic message; tells vacation responders and
            // Exchange not to answer it.
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"), "All".into()))
            .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|_| rejected)
    }

    /// Sends one email. Dev mode records it in the mailbox first.
    pub async fn send(&self, email: &RenderedEmail, now: Timestamp) -> Result<(), DeliveryError> {
        let message = self.build(email)?;
        if let Some(smtp) = &self.smtp {
            smtp.send(message).await.map_err(|e| classify(&e))?;
        }
        // Recorded once delivered, so a failing relay does not fill the dev
        // mailbox with one copy per attempt.
        if let Some(dev) = &self.dev {
            dev.push(DevMail {
                at: now,
                to: email.to.clone(),
                subject: email.subject.clone(),
                text: email.text.clone(),
                html: email.html.clone(),
            });
        }
        Ok(())
    }
}
