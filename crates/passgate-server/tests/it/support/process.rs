//! Running the real `passgate` binary: one-shot commands and servers whose
//! output is collected (and checked for secrets by the tests).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::*;

pub fn passgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_passgate"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSGATE_") {
            cmd.env_remove(name);
        }
    }
    cmd.kill_on_drop(true).stdin(Stdio::null());
    cmd
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = passgate().args(args).envs(envs.iter().copied()).output().await.unwrap_or_else(|e| panic!("{e}"));
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `passgate serve` (or `dev`) child process and everything it printed.
pub struct Running {
    pub child: Child,
    pub base: String,
    /// The metrics listener's base URL, unless it was turned off or not bound.
    pub metrics_base: Option<String>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub async fn spawn(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> Self {
        let mut child = passgate()
            .args(args)
            // The caller may override it: tests run many servers at once.
            .env("PASSGATE_METRICS_LISTEN", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .env("PASSGATE_LISTEN", "127.0.0.1:0")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let lines = collect_output(&mut child);
        let mut running = Self { child, base: String::new(), metrics_base: None, lines };
        let line = running.wait_for_line("listen_addr").await;
        running.base = format!("http://{}", field_address(&line, "listen_addr").unwrap_or_default());
        running.metrics_base = field_address(&line, "metrics_addr").map(|addr| format!("http://{addr}"));
        running
    }

    pub async fn wait_for_line(&self, needle: &str) -> String {
        for _ in 0..400 {
            if let Some(line) = self.output().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no line with {needle:?}; output so far:\n{}", self.output());
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// SIGTERM, then waits for the exit: the server drains its requests and
    /// finishes the emails it is sending before it exits, so whatever it
    /// was going to send has been sent once this returns.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap_or_else(|| panic!("the server already exited"));
        let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot signal the server");
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit after SIGTERM"))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Collects a child's standard output and error, line by line, as they come.
pub fn collect_output(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    lines
}

/// The `IP:port` logged as `field` (JSON or text log line), if any.
fn field_address(line: &str, field: &str) -> Option<String> {
    let rest = line.split(field).nth(1)?;
    let addr: String = rest
        .trim_start_matches(['"', ':', '='])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

pub fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("passgate-proc-{}", passgate_core::ids::IdKind::Request.generate()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

pub fn smtp_env<'a>(db: &'a str, smtp: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PASSGATE_DATABASE_URL", db),
        ("PASSGATE_SMTP_URL", smtp),
        ("PASSGATE_SECRET_KEY", SECRET_B64),
        ("PASSGATE_OUTBOX_LEASE", "2s"),
        ("PASSGATE_LOG", "debug"),
    ]
}

pub async fn create_project(db: &str) -> String {
    let out = run(
        &["project", "create", "--name", "Crash", "--redirect-url", CALLBACK, "--json"],
        &[("PASSGATE_DATABASE_URL", db)],
    )
    .await;
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stderr));
    let key = v["secretKey"].as_str().unwrap_or_default().to_string();
    remember_secret(&key);
    key
}

pub fn assert_clean(output: &str) {
    assert!(!output.contains(SECRET_B64), "the server secret reached the logs");
}

/// POSTs `body` as JSON to a running server with a project's key.
pub async fn post_json(base: &str, key: &str, path: &str, body: &serde_json::Value) -> super::Reply {
    let http = reqwest::Client::new();
    super::Reply::of(http.post(format!("{base}{path}")).bearer_auth(key).json(body).send().await).await
}
