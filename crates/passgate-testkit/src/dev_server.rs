//! A real `passgate dev` process for the tests of what runs beside
//! passgate (the SDK, the example app): the same binary users start, in a
//! folder of its own, sending its emails over SMTP to a test's sink.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `passgate` binary of this build: `target/<profile>/passgate` beside
/// the test binary, built first when it is not there (a test run of one
/// package does not build the server's binary).
pub fn passgate_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    // target/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let binary = profile_dir.join("passgate");
    if !binary.exists() {
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--locked", "-p", "passgate-server", "--bin", "passgate"])
            .status()
            .unwrap_or_else(|e| panic!("cargo build of passgate: {e}"));
        assert!(status.success(), "building the passgate binary failed");
    }
    binary
}

/// A running `passgate dev` and what it printed.
pub struct DevPassgate {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The dev project's secret key, from the start-up banner.
    pub key: String,
    child: Child,
    dir: PathBuf,
    output: Arc<Mutex<String>>,
}

impl DevPassgate {
    /// Starts `passgate dev` on a free loopback port, in a fresh folder,
    /// sending email to `smtp_url`.
    pub async fn start(smtp_url: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "passgate-dev-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(passgate_binary());
        for (name, _) in std::env::vars() {
            if name.starts_with("PASSGATE_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("dev")
            .env("PASSGATE_LISTEN", "127.0.0.1:0")
            .env("PASSGATE_METRICS_LISTEN", "127.0.0.1:0")
            .env("PASSGATE_SMTP_URL", smtp_url)
            .env("PASSGATE_LOG", "warn")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting passgate dev: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut all) = output.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                }
            });
        }
        let mut running = Self { base: String::new(), key: String::new(), child, dir, output };
        let api = running.wait_for("  API:").await;
        running.base = api.split_whitespace().nth(1).unwrap_or_default().trim_end_matches("/api/v2").to_string();
        let key = running.wait_for("  Secret key:").await;
        running.key = key.split_whitespace().last().unwrap_or_default().to_string();
        running
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn wait_for(&mut self, prefix: &str) -> String {
        for _ in 0..800 {
            if let Some(line) = self.output().lines().find(|l| l.starts_with(prefix)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("passgate dev exited ({status}):\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("passgate dev printed no {prefix:?} line:\n{}", self.output());
    }
}

impl Drop for DevPassgate {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
