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

#[derive(Debug, Clone)]
pub struct Mail {
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

    /// A line of the text part that is exactly six digits.
    pub fn code(&self) -> Option<String> {
        self.text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    }
}

#[derive(Debug)]
struct State {
    mails: Mutex<Vec<Mail>>,
    behaviour: Mutex<Behaviour>,
    arrived: Notify,
}

#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub port: u16,
    state: Arc<State>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let state = Arc::new(State {
            mails: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::Accept),
            arrived: Notify::new(),
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, accept_state.clone()));
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

async fn session(socket: tokio::net::TcpStream, state: Arc<State>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sink.test ESMTP test sink\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760".to_string()
        } else if upper.starts_with("HELO") {
            "250 sink.test".to_string()
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().trim_matches(['<', '>']).to_string();
            to.clear();
            "250 2.1.0 ok".to_string()
        } else if upper.starts_with("RCPT TO:") {
            let behaviour = *state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
            match behaviour {
                Behaviour::Accept => {
                    to.push(command[8..].trim().trim_matches(['<', '>']).to_string());
                    "250 2.1.5 ok".to_string()
                }
                Behaviour::RejectRecipient(code) => {
                    format!("{code} recipient refused by the test sink")
                }
            }
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
            }
            let mail = parse(from.clone(), to.clone(), data);
            state.mails.lock().unwrap_or_else(|e| e.into_inner()).push(mail);
            state.arrived.notify_waiters();
            "250 2.0.0 queued".to_string()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok".to_string()
        } else {
            "502 not implemented".to_string()
        };
        if write.write_all(format!("{answer}\r\n").as_bytes()).await.is_err() {
            return;
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
    Mail { from, to, headers, text, html }
}
