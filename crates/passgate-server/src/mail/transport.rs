//! Sending: SMTP through lettre's pooled async transport, and in dev mode
//! the in-memory mailbox behind `/_dev/mailbox`.
//!
//! TLS (the SMTP URL's `tls=`): credentials never travel in clear. With a
//! user and password, `smtp://` requires STARTTLS unless `tls=opportunistic`
//! (which uses STARTTLS when offered and, offered none, refuses to
//! authenticate rather than send the password in clear); `tls=none` with
//! credentials is refused at start-up. Without credentials, `smtp://` uses
//! STARTTLS when the relay offers it, and `tls=none` sends plainly to a
//! local relay, with a warning at start-up. `smtps://` is TLS from the first
//! byte.
//!
//! Failures are reduced to a short category plus the SMTP reply code
//! (`recipient_rejected (550)`), never the relay's free text, which can echo
//! addresses or internals; and to whether retrying can help.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

use super::smtp::{Security, SmtpConfig, SmtpPool};
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

/// Maps a failed send to our categories.
pub fn classify(e: &super::smtp::SendError) -> DeliveryError {
    use super::smtp::SendError;
    match e {
        SendError::Smtp(e) => classify_smtp(e),
        SendError::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            DeliveryError { category: "timeout", reply_code: None, permanent: false }
        }
        SendError::Connect(_) => DeliveryError { category: "connection_refused", reply_code: None, permanent: false },
        SendError::Tls(_) => DeliveryError { category: "tls", reply_code: None, permanent: false },
        SendError::Timeout => DeliveryError { category: "timeout", reply_code: None, permanent: false },
    }
}

fn classify_smtp(e: &lettre::transport::smtp::Error) -> DeliveryError {
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
        // lettre refusing on its own (no AUTH mechanism in common, a reply it
        // cannot parse): retrying may help once the relay is fixed.
        None if e.is_client() || e.is_response() => ("message_rejected", false),
        None => match io_kind(e) {
            Some(std::io::ErrorKind::TimedOut) => ("timeout", false),
            Some(std::io::ErrorKind::InvalidData) => ("tls", false),
            _ => ("connection_refused", false),
        },
    };
    DeliveryError { category, reply_code, permanent }
}

/// A message as the dev mailbox shows it (no `Debug`: it holds a live link).
#[derive(Clone)]
pub struct DevMail {
    pub at: Timestamp,
    pub email: RenderedEmail,
}

/// The last [`DevMailbox::CAPACITY`] emails, newest first (dev mode only).
/// Kept in memory: a restart empties it (the page says so).
#[derive(Clone)]
pub struct DevMailbox {
    started_at: Timestamp,
    shelf: Arc<Mutex<Shelf>>,
}

#[derive(Default)]
struct Shelf {
    mails: VecDeque<DevMail>,
    /// Emails ever shelved, so a page can tell that new ones came.
    delivered: u64,
}

impl std::fmt::Debug for DevMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevMailbox({} messages)", self.delivered())
    }
}

impl DevMailbox {
    pub const CAPACITY: usize = 200;

    /// An empty mailbox for a server started at `started_at`.
    pub fn new(started_at: Timestamp) -> Self {
        Self { started_at, shelf: Arc::default() }
    }

    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    pub fn push(&self, mail: DevMail) {
        if let Ok(mut shelf) = self.shelf.lock() {
            shelf.mails.push_front(mail);
            shelf.mails.truncate(Self::CAPACITY);
            shelf.delivered += 1;
        }
    }

    /// The emails kept, newest first.
    pub fn list(&self) -> Vec<DevMail> {
        self.shelf.lock().map(|shelf| shelf.mails.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many emails arrived since the server started.
    pub fn delivered(&self) -> u64 {
        self.shelf.lock().map(|shelf| shelf.delivered).unwrap_or_default()
    }
}

/// Where emails go: an SMTP relay, the dev mailbox, or both (dev mode with
/// `PASSGATE_SMTP_URL` set).
#[derive(Clone)]
pub struct Mailer {
    smtp: Option<Arc<SmtpPool>>,
    from: Mailbox,
    dev: Option<DevMailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("smtp", &self.smtp.is_some()).field("dev", &self.dev.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    // Never carries the URL itself: it may hold a password.
    #[error("the SMTP URL is not usable: {0}")]
    Url(&'static str),
    #[error("the SMTP CA file is not a PEM certificate")]
    Ca,
}

/// How many SMTP connections (and so concurrent sends) the pool keeps.
pub const SMTP_POOL_SIZE: u32 = 16;

/// Reads `smtp://` / `smtps://` URLs (the forms of lettre's `from_url`),
/// adding `ca_pem` to the trusted roots when the relay's certificate comes
/// from a private CA.
fn smtp_config(url: &str, ca_pem: Option<&[u8]>) -> Result<SmtpConfig, SmtpUrlError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, TlsParameters};

    let url = url::Url::parse(url).map_err(|_| SmtpUrlError::Url("not a URL"))?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(SmtpUrlError::Url("no host"))?.to_string();
    let tls_mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let starttls = |required: bool| {
        let mut builder = TlsParameters::builder(host.clone());
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(|_| SmtpUrlError::Ca)?);
        }
        let parameters = builder.build_rustls().map_err(|_| SmtpUrlError::Url("TLS parameters"))?;
        Ok::<_, SmtpUrlError>(Security::StartTls { parameters, required })
    };
    let has_credentials = url.password().is_some();
    let (security, default_port) = match (url.scheme(), tls_mode.as_deref(), has_credentials) {
        // Credentials travel inside TLS or not at all: STARTTLS is required
        // unless the operator asked for something else that is still TLS.
        ("smtp", None, true) => (starttls(true)?, 25),
        ("smtp", Some("required"), _) => (starttls(true)?, 587),
        // No credentials: STARTTLS when the relay offers it.
        ("smtp", None, false) => (starttls(false)?, 25),
        ("smtp", Some("opportunistic"), false) => (starttls(false)?, 587),
        // With credentials, opportunistic still never authenticates in clear
        // (see `SmtpPool::connect`): the message waits for a relay with TLS.
        ("smtp", Some("opportunistic"), true) => (starttls(false)?, 587),
        ("smtp", Some("none"), false) => (Security::None, 25),
        ("smtp", Some("none"), true) => {
            return Err(SmtpUrlError::Url(
                "credentials are never sent without TLS: drop tls=none, or the user and password",
            ));
        }
        ("smtps", None, _) => (implicit_tls(&host, ca_pem)?, 465),
        _ => {
            return Err(SmtpUrlError::Url("use smtp://, smtp://…?tls=required|opportunistic|none or smtps://"));
        }
    };
    let credentials = match url.password() {
        Some(password) => {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| SmtpUrlError::Url("credentials are not UTF-8"))
            };
            Some(Credentials::new(decode(url.username())?, decode(password)?))
        }
        None => None,
    };
    Ok(SmtpConfig {
        host,
        port: url.port().unwrap_or(default_port),
        security,
        credentials,
        timeout: Duration::from_secs(20),
    })
}

/// rustls for `smtps://`: the public web roots, plus the operator's CA.
fn implicit_tls(host: &str, ca_pem: Option<&[u8]>) -> Result<Security, SmtpUrlError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.map_err(|_| SmtpUrlError::Ca)?).map_err(|_| SmtpUrlError::Ca)?;
            added += 1;
        }
        if added == 0 {
            return Err(SmtpUrlError::Ca);
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| SmtpUrlError::Url("TLS parameters"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| SmtpUrlError::Url("host is not a TLS server name"))?;
    Ok(Security::Implicit { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
}

/// The `Subject` header. A subject of plain ASCII without `=?` goes as it
/// is; any other is sent as RFC 2047 encoded words (UTF-8, base64), each
/// under the 75-character limit and on its own folded line. `=?` in plain
/// text (an app name of `=?utf-8?q?Your_bank?=`, say) would otherwise be
/// decoded by the reader's mail client as an encoded word, showing text
/// that was never the app's name.
fn subject_header(subject: &str) -> HeaderValue {
    let name = HeaderName::new_from_ascii_str("Subject");
    let plain = subject.bytes().all(|b| (b' '..=b'~').contains(&b)) && !subject.contains("=?");
    if plain {
        return HeaderValue::new(name, subject.to_string());
    }
    // 45 bytes make 60 characters of base64: with `=?utf-8?b?` and `?=`, 72.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in subject.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    let encoded = words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join("\r\n ");
    HeaderValue::dangerous_new_pre_encoded(name, subject.to_string(), encoded)
}

impl Mailer {
    pub fn new(
        smtp_url: Option<&SecretString>,
        ca_pem: Option<&[u8]>,
        from: Mailbox,
        dev: Option<DevMailbox>,
    ) -> Result<Self, SmtpUrlError> {
        let smtp = smtp_url
            .map(|url| smtp_config(url.expose_secret(), ca_pem))
            .transpose()?
            .map(|config| Arc::new(SmtpPool::new(config, SMTP_POOL_SIZE as usize)));
        Ok(Self { smtp, from, dev })
    }

    pub fn dev_mailbox(&self) -> Option<&DevMailbox> {
        self.dev.as_ref()
    }

    /// Whether mail goes to the relay in clear, as asked with `tls=none`
    /// (the server warns about it at start-up).
    pub fn sends_in_clear(&self) -> bool {
        self.smtp.as_ref().is_some_and(|pool| pool.sends_in_clear())
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
            .raw_header(subject_header(&email.subject))
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
            let envelope = message.envelope().clone();
            smtp.send(&envelope, &message.formatted()).await.map_err(|e| classify(&e))?;
        }
        // Recorded once delivered, so a failing relay does not fill the dev
        // mailbox with one copy per attempt.
        if let Some(dev) = &self.dev {
            dev.push(DevMail { at: now, email: email.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each URL asks for: (TLS at all, TLS required before anything
    /// is sent, in clear by request).
    fn security(url: &str) -> Result<(bool, bool, bool), SmtpUrlError> {
        smtp_config(url, None).map(|c| match c.security {
            Security::None => (false, false, true),
            Security::StartTls { required, .. } => (true, required, false),
            Security::Implicit { .. } => (true, true, false),
        })
    }

    #[test]
    fn credentials_never_travel_without_tls() {
        assert_eq!(security("smtp://user:pass@relay.example").ok(), Some((true, true, false)), "required by default");
        assert_eq!(security("smtp://user:pass@relay.example?tls=required").ok(), Some((true, true, false)));
        // Opportunistic: STARTTLS when offered; the pool refuses AUTH without it.
        assert_eq!(security("smtp://user:pass@relay.example?tls=opportunistic").ok(), Some((true, false, false)));
        assert!(security("smtp://user:pass@relay.example?tls=none").is_err(), "tls=none with credentials is refused");
        assert_eq!(security("smtps://user:pass@relay.example").ok(), Some((true, true, false)));
    }

    /// Decodes the encoded words of a header value back to text.
    fn decode_words(value: &str) -> String {
        value
            .split_whitespace()
            .map(|word| {
                let inner = word
                    .strip_prefix("=?utf-8?b?")
                    .and_then(|w| w.strip_suffix("?="))
                    .unwrap_or_else(|| panic!("{word}"));
                let bytes = base64::engine::general_purpose::STANDARD.decode(inner).unwrap_or_else(|e| panic!("{e}"));
                String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[test]
    fn subjects_that_could_be_read_as_encoded_words_are_encoded() {
        let mailer =
            Mailer::new(None, None, "App <no-reply@app.example>".parse().unwrap_or_else(|e| panic!("{e:?}")), None)
                .unwrap_or_else(|e| panic!("{e}"));
        let message = |subject: &str| {
            let email = RenderedEmail {
                to: "ada@example.com".into(),
                subject: subject.into(),
                text: "t".into(),
                html: "h".into(),
                link: "https://app.example/cb?token=t".into(),
                code: None,
            };
            let built = mailer.build(&email).unwrap_or_else(|e| panic!("{e:?}"));
            String::from_utf8(built.formatted()).unwrap_or_else(|e| panic!("{e}"))
        };
        let subject_of = |formatted: &str| {
            let start = formatted.find("Subject: ").unwrap_or_else(|| panic!("no subject")) + "Subject: ".len();
            let rest = &formatted[start..];
            let mut value = String::new();
            for (i, line) in rest.split("\r\n").enumerate() {
                if i > 0 && !line.starts_with(' ') {
                    break;
                }
                value.push_str(line);
            }
            value
        };
        assert_eq!(subject_of(&message("Sign in to Acme")), "Sign in to Acme");
        for tricky in [
            "Sign in to =?utf-8?q?Your_Bank?=",
            "Anmelden bei Bücher & Co — a long app name that goes well past one encoded word of forty-five bytes",
        ] {
            let value = subject_of(&message(tricky));
            assert!(value.starts_with("=?utf-8?b?"), "{value}");
            assert!(value.split_whitespace().all(|w| w.len() <= 75), "{value}");
            assert_eq!(decode_words(&value), tricky);
        }
    }

    #[test]
    fn without_credentials_starttls_is_used_when_offered_and_clear_only_when_asked() {
        assert_eq!(security("smtp://127.0.0.1:2525").ok(), Some((true, false, false)));
        assert_eq!(security("smtp://127.0.0.1:2525?tls=none").ok(), Some((false, false, true)));
        assert!(security("smtp://relay.example?tls=sometimes").is_err());
        assert!(security("smtps://relay.example?tls=none").is_err());
    }
}
