//! `otp-session-load`: what a session credential and a stamp cost a login,
//! under load. The bench kit's `otp` flow sends a code and verifies it; this
//! tool runs that flow in three modes against a passgate it starts itself:
//!
//! - `code`: send, read the code from the email, verify (the kit's flow);
//! - `credential`: the same with a `targetPublicKey` at send, so the verify
//!   mints a session key and seals it to the target, and the client opens
//!   the bundle;
//! - `stamped`: `credential`, then a `session/whoami` signed with the
//!   session key (Turnkey's own stamper, so the request is a real client's).
//!
//! It reports logins per second, each step's latency, and the CPU the
//! server and the database spent per login; the differences between the
//! modes are what a credential and a stamp cost (bench/session.sh runs it).
//! Every user signs in with a fresh address, so no per-address limit is
//! reached; the project's send limit is raised with the documented setting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Parser, ValueEnum};
use p256::elliptic_curve::sec1::ToSec1Point;
use passgate_core::credential::open_bundle;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use turnkey_api_key_stamper::{Stamp, TurnkeyP256ApiKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Code,
    Credential,
    Stamped,
}

#[derive(Debug, Parser)]
#[command(about = "Loads passgate's OTP flow with and without session credentials and stamps")]
struct Args {
    /// The passgate binary to run.
    #[arg(long)]
    passgate: PathBuf,
    /// The database the server runs on (emptied by the caller).
    #[arg(long)]
    database_url: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 64)]
    users: usize,
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:8181")]
    listen: String,
    /// The database server's main process: its CPU and its children's is counted.
    #[arg(long)]
    db_pid: Option<u32>,
    /// Writes the figures as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Codes by recipient: either waited for or arrived first.
#[derive(Default)]
struct Mailbox(Mutex<HashMap<String, Slot>>);

enum Slot {
    Waiting(oneshot::Sender<String>),
    Arrived(String),
}

impl Mailbox {
    fn deliver(&self, to: String, code: String) {
        let mut slots = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slots.remove(&to) {
            Some(Slot::Waiting(waiter)) => {
                let _ = waiter.send(code);
            }
            _ => {
                slots.insert(to, Slot::Arrived(code));
            }
        }
    }

    async fn code_for(&self, to: &str) -> Result<String, Failure> {
        let waiting = {
            let mut slots = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slots.remove(to) {
                Some(Slot::Arrived(code)) => return Ok(code),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(to.to_string(), Slot::Waiting(tx));
                    rx
                }
            }
        };
        Ok(tokio::time::timeout(Duration::from_secs(30), waiting).await??)
    }
}

/// A minimal SMTP sink: accepts every message and hands its one-time code
/// to the mailbox (the testkit's parser reads the MIME parts).
async fn smtp_sink(listener: TcpListener, mailbox: Arc<Mailbox>) {
    while let Ok((stream, _)) = listener.accept().await {
        let mailbox = Arc::clone(&mailbox);
        tokio::spawn(async move {
            let _ = smtp_session(stream, &mailbox).await;
        });
    }
}

async fn smtp_session(stream: TcpStream, mailbox: &Mailbox) -> Result<(), Failure> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 otp-session-load sink\r\n").await?;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 otp-session-load\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let to = line.trim_end()[8..].trim().trim_matches(['<', '>']).to_ascii_lowercase();
            recipients.push(to);
            b"250 ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut raw = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                raw.push_str(text.strip_prefix('.').filter(|_| text.starts_with("..")).unwrap_or(text));
                raw.push('\n');
            }
            let mail = passgate_testkit::smtp::parse_mail(&raw);
            if let Some(code) = mail.one_time_code() {
                for to in recipients.drain(..) {
                    mailbox.deliver(to, code.clone());
                }
            }
            recipients.clear();
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" {
            recipients.clear();
            b"250 ok\r\n"
        } else {
            b"250 ok\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// One user's state: the server's address, the key, the mailbox.
struct Target {
    http: reqwest::Client,
    base: String,
    secret_key: String,
    mailbox: Arc<Mailbox>,
    mode: Mode,
}

/// Milliseconds each step of one login took.
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    send: f64,
    email: f64,
    verify: f64,
    whoami: f64,
    total: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn post(target: &Target, path: &str, body: Value) -> Result<Value, Failure> {
    let reply =
        target.http.post(format!("{}{path}", target.base)).bearer_auth(&target.secret_key).json(&body).send().await?;
    let status = reply.status();
    let body: Value = reply.json().await?;
    if !status.is_success() {
        return Err(format!("{path}: {status} {body}").into());
    }
    Ok(body)
}

/// A target key pair as a browser makes it: the private scalar and the
/// uncompressed public key in hex.
fn target_key_pair() -> ([u8; 32], String) {
    loop {
        let mut scalar = [0u8; 32];
        if getrandom::fill(&mut scalar).is_err() {
            continue;
        }
        if let Ok(secret) = p256::SecretKey::from_slice(&scalar) {
            return (scalar, hex::encode(secret.public_key().to_sec1_point(false).as_bytes()));
        }
    }
}

async fn one_login(target: &Target, email: &str) -> Result<Steps, Failure> {
    let started = Instant::now();
    let key_pair = (target.mode != Mode::Code).then(target_key_pair);
    let mut send_body = json!({ "email": email });
    if let Some((_, public)) = &key_pair {
        send_body["targetPublicKey"] = json!(public);
    }
    let sent = post(target, "/api/v2/otp/send", send_body).await?;
    let send = ms(started);
    let otp_id = sent["otpId"].as_str().ok_or("no otpId")?.to_string();
    let code = target.mailbox.code_for(email).await?;
    let email_ms = ms(started) - send;
    let verified = post(target, "/api/v2/otp/verify", json!({ "otpId": otp_id, "code": code })).await?;
    let verify = ms(started) - send - email_ms;
    let mut steps = Steps { send, email: email_ms, verify, ..Steps::default() };
    if let Some((private, _)) = key_pair {
        let bundle = verified["authSession"]["credentialBundle"].as_str().ok_or("no credentialBundle")?;
        let session_private = open_bundle(bundle, &private).map_err(|e| format!("{e:?}"))?;
        if target.mode == Mode::Stamped {
            let before = Instant::now();
            let session_key = TurnkeyP256ApiKey::from_bytes(session_private.to_vec(), None::<Vec<u8>>)
                .map_err(|e| format!("{e:?}"))?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
            let body = json!({ "action": "whoami", "timestampMs": now.to_string() }).to_string();
            let stamp = Stamp::stamp(&session_key, body.as_bytes()).map_err(|e| format!("{e:?}"))?;
            let reply = target
                .http
                .post(format!("{}/api/v2/session/whoami", target.base))
                .header("content-type", "application/json")
                .header("X-Stamp", stamp.value.as_str())
                .body(body)
                .send()
                .await?;
            if !reply.status().is_success() {
                return Err(format!("whoami: {}", reply.status()).into());
            }
            steps.whoami = ms(before);
        }
    }
    steps.total = ms(started);
    Ok(steps)
}

/// CPU seconds (user and system) that `pid` and its direct children have used.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks_of = |stat: &str| -> Option<(u32, f64)> {
        // The command name may hold spaces: the fields start after its ')'.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let parent = fields.get(1)?.parse().ok()?;
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((parent, ticks))
    };
    let mut ticks = 0.0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(this) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            if let Some((parent, used)) = ticks_of(&stat)
                && (this == pid || parent == pid)
            {
                ticks += used;
            }
        }
    }
    ticks / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn start_server(args: &Args, smtp_port: u16) -> Result<(tokio::process::Child, String), Failure> {
    let created = tokio::process::Command::new(&args.passgate)
        .args(["project", "create", "--name", "bench", "--redirect-url", "http://localhost:3000/auth/callback"])
        .args(["--emails-per-minute", "1000000", "--json"])
        .env("PASSGATE_DATABASE_URL", &args.database_url)
        .output()
        .await?;
    if !created.status.success() {
        return Err(format!("project create: {}", String::from_utf8_lossy(&created.stderr)).into());
    }
    let project: Value = serde_json::from_slice(&created.stdout)?;
    let secret_key = project["secretKey"].as_str().ok_or("no secretKey")?.to_string();
    let mut server_secret = [0u8; 32];
    getrandom::fill(&mut server_secret).map_err(|e| e.to_string())?;
    let server = tokio::process::Command::new(&args.passgate)
        .arg("serve")
        .env("PASSGATE_DATABASE_URL", &args.database_url)
        .env("PASSGATE_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("PASSGATE_SECRET_KEY", base64::engine::general_purpose::STANDARD.encode(server_secret))
        .env("PASSGATE_LISTEN", &args.listen)
        .env("PASSGATE_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let ready = format!("http://{}/readyz", args.listen);
    for _ in 0..200 {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
            return Ok((server, secret_key));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the server did not get ready".into())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let smtp_port = listener.local_addr()?.port();
    let mailbox = Arc::new(Mailbox::default());
    tokio::spawn(smtp_sink(listener, Arc::clone(&mailbox)));
    let (mut server, secret_key) = start_server(&args, smtp_port).await?;
    let server_pid = server.id().ok_or("the server exited")?;

    let http = reqwest::Client::builder().pool_max_idle_per_host(args.users).build()?;
    let target =
        Arc::new(Target { http, base: format!("http://{}", args.listen), secret_key, mailbox, mode: args.mode });
    let started = Instant::now();
    let window_start = Duration::from_secs(args.warmup);
    let window_end = window_start + Duration::from_secs(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let users: Vec<_> = (0..args.users)
        .map(|user| {
            let (target, stop) = (Arc::clone(&target), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut in_window, mut failures) = (Vec::new(), 0_u64);
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = format!("u{user}-{n}@bench.example");
                    let began = started.elapsed();
                    let outcome = one_login(&target, &email).await;
                    let ended = started.elapsed();
                    let counted = began >= window_start && ended <= window_end;
                    match outcome {
                        Ok(steps) if counted => in_window.push(steps),
                        Ok(_) => {}
                        Err(e) => {
                            failures += 1;
                            if failures <= 3 {
                                eprintln!("user {user}: {e}");
                            }
                        }
                    }
                }
                (in_window, failures)
            })
        })
        .collect();

    tokio::time::sleep(window_start).await;
    let (server_cpu_0, db_cpu_0) = (cpu_seconds(server_pid), args.db_pid.map(cpu_seconds));
    tokio::time::sleep(window_end - window_start).await;
    let (server_cpu_1, db_cpu_1) = (cpu_seconds(server_pid), args.db_pid.map(cpu_seconds));
    stop.store(true, Ordering::Relaxed);
    let (mut logins, mut failures) = (Vec::new(), 0);
    for user in users {
        let (done, failed) = user.await?;
        logins.extend(done);
        failures += failed;
    }
    server.kill().await?;

    let seconds = args.duration as f64;
    let count = logins.len() as f64;
    let per_login_us = |cpu: f64| if count > 0.0 { cpu / count * 1e6 } else { 0.0 };
    let server_cpu = server_cpu_1 - server_cpu_0;
    let db_cpu = db_cpu_1.zip(db_cpu_0).map(|(end, start)| end - start);
    let column = |pick: fn(&Steps) -> f64| {
        let mut values: Vec<f64> = logins.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        (percentile(&values, 0.5), percentile(&values, 0.99))
    };
    let (send, email, verify, whoami, total) =
        (column(|s| s.send), column(|s| s.email), column(|s| s.verify), column(|s| s.whoami), column(|s| s.total));
    let figures = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "users": args.users,
        "seconds": seconds,
        "logins": logins.len(),
        "failures": failures,
        "loginsPerSecond": count / seconds,
        "serverCores": server_cpu / seconds,
        "serverCpuMicrosPerLogin": per_login_us(server_cpu),
        "dbCores": db_cpu.map(|cpu| cpu / seconds),
        "dbCpuMicrosPerLogin": db_cpu.map(per_login_us),
        "p50Ms": { "send": send.0, "email": email.0, "verify": verify.0, "whoami": whoami.0, "login": total.0 },
        "p99Ms": { "send": send.1, "email": email.1, "verify": verify.1, "whoami": whoami.1, "login": total.1 },
    });
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)?;
    }
    if failures > 0 {
        return Err(format!("{failures} logins failed").into());
    }
    Ok(())
}
