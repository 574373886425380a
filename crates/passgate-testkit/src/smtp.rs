//! A real SMTP server on loopback for tests: lettre talks to it over TCP
//! exactly as it would to a relay. It records every message, can be told to
//! reject recipients or fail temporarily, and decodes MIME enough to read
//! the text and HTML parts back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the sink answers `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    /// Answer RCPT with this code (e.g. 550 permanent, 451 temporary).
    RejectRecipient(u16),
}

/// Transport security the sink offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// Advertises STARTTLS and upgrades when asked.
    StartTls,
    /// TLS from the first byte (smtps).
    Implicit,
}

/// A sink's TLS identity: a private CA and a certificate for `localhost` it signed.
pub struct TestCa {
    pub ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TestCa {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "passgate test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap_or_else(|e| panic!("{e}"));
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .unwrap_or_else(|e| panic!("{e}"));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap_or_else(|e| panic!("{e}"));
        Self { ca_pem: ca_cert.pem(), acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
pub struct SinkOptions {
    pub tls: Option<(TlsMode, TestCa)>,
    /// Require `AUTH PLAIN`/`LOGIN` with these credentials before MAIL.
    pub auth: Option<(String, String)>,
    /// Leave PIPELINING (RFC 2920) out of the EHLO reply, as old relays do.
    pub no_pipelining: bool,
    /// Take this long to accept each message (a slow relay).
    pub delay: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Mail {
    /// The user the client authenticated as, if any.
    pub auth_user: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
    /// Whether the client sent RCPT before the reply to MAIL (pipelined).
    pub pipelined: bool,
    pub from: String,
    pub to: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub html: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first link's `token` parameter in the text part.
    pub fn token(&self) -> Option<String> {
        let start = self.text.find("token=")? + "token=".len();
        let token: String = self.text[start..].chars().take_while(char::is_ascii_alphanumeric).collect();
        Some(token)
    }

    /// The first `http(s)://…` link in the text part.
    pub fn link(&self) -> Option<String> {
        let start = self.text.find("http")?;
        Some(self.text[start..].split_whitespace().next()?.to_string())
    }

    /// A one-time code: a line of the text part that is 6–9 digits or
    /// Crockford Base32 letters, standing alone.
    pub fn one_time_code(&self) -> Option<String> {
        const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        self.text
            .lines()
            .map(str::trim)
            .find(|l| (6..=9).contains(&l.len()) && l.bytes().all(|b| CROCKFORD.contains(&b)))
            .map(str::to_string)
    }

    /// A line of the text part that is exactly six digits.
    pub fn code(&self) -> Option<String> {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    }
}

struct State {
    mails: Mutex<Vec<Mail>>,
    /// Every AUTH command received, and whether it came inside TLS.
    auth_attempts: Mutex<Vec<bool>>,
    behaviour: Mutex<Behaviour>,
    arrived: Notify,
    tls_mode: TlsMode,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<(String, String)>,
    pipelining: bool,
    delay: Option<Duration>,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<State>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_with(SinkOptions::default()).await
    }

    pub async fn start_with(options: SinkOptions) -> Self {
        let (tls_mode, acceptor) = match options.tls {
            Some((mode, ca)) => (mode, Some(ca.acceptor)),
            None => (TlsMode::None, None),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let state = Arc::new(State {
            mails: Mutex::new(Vec::new()),
            auth_attempts: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Accept),
            arrived: Notify::new(),
            tls_mode,
            acceptor,
            auth: options.auth,
            pipelining: !options.no_pipelining,
            delay: options.delay,
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, accept_state.clone()));
            }
        });
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.state.mails.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every AUTH command the sink received: `true` for each that came
    /// inside TLS, `false` for each sent in clear.
    pub fn auth_attempts(&self) -> Vec<bool> {
        self.state.auth_attempts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address))).collect()
    }

    /// Waits (10 s at most) until `n` messages to `address` have arrived.
    pub async fn wait_for_count(&self, address: &str, n: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.state.arrived.notified();
            let got = self.mails_to(address);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {n} email(s) to {address}; got {}", got.len());
            }
        }
    }

    /// Waits for the first message to `address`.
    pub async fn wait_for(&self, address: &str) -> Mail {
        self.wait_for_count(address, 1).await.remove(0)
    }
}

async fn connection(socket: tokio::net::TcpStream, state: Arc<State>) {
    let acceptor = state.acceptor.clone();
    match (state.tls_mode, acceptor) {
        (TlsMode::Implicit, Some(acceptor)) => {
            if let Ok(tls) = acceptor.accept(socket).await {
                session(tls, &state, true, true).await;
            }
        }
        (_, acceptor) => {
            if let Some(plain) = session(socket, &state, false, true).await
                && let Some(acceptor) = acceptor
                && let Ok(tls) = acceptor.accept(plain).await
            {
                session(tls, &state, true, false).await;
            }
        }
    }
}

/// One SMTP conversation. Returns the stream when the client asked for
/// STARTTLS, so the caller can upgrade it and carry on.
async fn session<S>(stream: S, state: &State, encrypted: bool, greet: bool) -> Option<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(stream);
    if greet {
        let _ = lines.get_mut().write_all(b"220 sink.test ESMTP test sink\r\n").await;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut auth_user: Option<String> = None;
    let mut pipelined = false;
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("AUTH") {
            state.auth_attempts.lock().unwrap_or_else(|e| e.into_inner()).push(encrypted);
        }
        let answer = if upper.starts_with("EHLO") {
            let mut caps = vec!["sink.test", "8BITMIME", "SMTPUTF8", "SIZE 10485760"];
            if state.pipelining {
                caps.push("PIPELINING");
            }
            if state.tls_mode == TlsMode::StartTls && !encrypted {
                caps.push("STARTTLS");
            }
            if state.auth.is_some() {
                caps.push("AUTH PLAIN LOGIN");
            }
            let n = caps.len();
            caps.iter()
                .enumerate()
                .map(|(i, c)| format!("250{}{c}", if i + 1 == n { ' ' } else { '-' }))
                .collect::<Vec<_>>()
                .join("\r\n")
        } else if upper.starts_with("HELO") {
            "250 sink.test".to_string()
        } else if upper == "STARTTLS" && state.tls_mode == TlsMode::StartTls && !encrypted {
            let _ = lines.get_mut().write_all(b"220 2.0.0 ready to start TLS\r\n").await;
            return Some(lines.into_inner());
        } else if upper.starts_with("AUTH PLAIN ") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(command[11..].trim()).unwrap_or_default();
            let parts: Vec<String> =
                decoded.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            match (&state.auth, parts.as_slice()) {
                (Some((user, pass)), [_, u, p]) if u == user && p == pass => {
                    auth_user = Some(u.clone());
                    "235 2.7.0 authenticated".to_string()
                }
                _ => "535 5.7.8 authentication failed".to_string(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            if state.auth.is_some() && auth_user.is_none() {
                "530 5.7.0 authentication required".to_string()
            } else {
                from = command[10..].trim().trim_matches(['<', '>']).to_string();
                to.clear();
                // The next command already waiting, unanswered: pipelined.
                pipelined = !lines.buffer().is_empty();
                "250 2.1.0 ok".to_string()
            }
        } else if upper.starts_with("RCPT TO:") {
            let behaviour = *state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
            match behaviour {
                Behaviour::Accept => {
                    to.push(command[8..].trim().trim_matches(['<', '>']).to_string());
                    "250 2.1.5 ok".to_string()
                }
                Behaviour::RejectRecipient(code) => format!("{code} recipient refused by the test sink"),
            }
        } else if upper == "DATA" && to.is_empty() {
            "554 5.5.1 no valid recipients".to_string()
        } else if upper == "DATA" {
            let _ = lines.get_mut().write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
            }
            if let Some(delay) = state.delay {
                tokio::time::sleep(delay).await;
            }
            let mut mail = parse(from.clone(), to.clone(), data);
            mail.auth_user = auth_user.clone();
            mail.tls = encrypted;
            mail.pipelined = pipelined;
            state.mails.lock().unwrap_or_else(|e| e.into_inner()).push(mail);
            state.arrived.notify_waiters();
            "250 2.0.0 queued".to_string()
        } else if upper == "QUIT" {
            let _ = lines.get_mut().write_all(b"221 bye\r\n").await;
            return None;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok".to_string()
        } else {
            "502 not implemented".to_string()
        };
        if lines.get_mut().write_all(format!("{answer}\r\n").as_bytes()).await.is_err() {
            return None;
        }
    }
}

fn split_head(raw: &str) -> (Vec<(String, String)>, String) {
    let normalized = raw.replace("\r\n", "\n");
    let (head, body) = normalized.split_once("\n\n").unwrap_or((&normalized, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    (headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
}

fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode(headers: &[(String, String)], body: &str) -> String {
    match header(headers, "Content-Transfer-Encoding").to_ascii_lowercase().as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(compact).unwrap_or_default())
                .into_owned()
        }
        _ => body.to_string(),
    }
}

/// A message as the sink received it after `DATA` (lines joined by `\n`,
/// dot-stuffing undone), parsed: for tools with a sink of their own.
pub fn parse_mail(raw: &str) -> Mail {
    parse(String::new(), Vec::new(), raw.to_string())
}

fn parse(from: String, to: Vec<String>, raw: String) -> Mail {
    let (headers, body) = split_head(&raw);
    let content_type = header(&headers, "Content-Type").to_string();
    let (mut text, mut html) = (String::new(), String::new());
    if let Some(boundary) = content_type.split("boundary=").nth(1) {
        let boundary = boundary.trim_matches('"').split(';').next().unwrap_or_default().trim_matches('"');
        for part in body.split(&format!("--{boundary}")).skip(1) {
            let (part_headers, part_body) = split_head(part.trim_start_matches('\n'));
            let decoded = decode(&part_headers, part_body.trim_end_matches('\n'));
            let ct = header(&part_headers, "Content-Type").to_ascii_lowercase();
            if ct.starts_with("text/plain") {
                text = decoded;
            } else if ct.starts_with("text/html") {
                html = decoded;
            }
        }
    } else {
        text = decode(&headers, &body);
    }
    Mail { auth_user: None, tls: false, pipelined: false, from, to, headers, text, html }
}
