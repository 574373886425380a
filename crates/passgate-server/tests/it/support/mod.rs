//! The test harness: a real passgate server (the library's router and outbox
//! worker, on a real TCP socket at 127.0.0.1:0) over a real database (see
//! [`db`]: SQLite or PostgreSQL), a
//! real SMTP sink on loopback, a manual clock, and a log capture that fails
//! the test if any secret the test saw (token, code, key) was ever logged.

pub mod db;
pub mod process;
pub mod receiver;
pub mod router;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use passgate_core::apikey::{ApiKey, KeyMode};
use passgate_core::secret::ServerSecret;
use passgate_core::{ApiKeyId, ManualClock, ProjectId, Timestamp};
use passgate_server::mail::outbox::OutboxConfig;
use passgate_server::mail::templates::Templates;
use passgate_server::mail::transport::{DevMailbox, Mailer};
use passgate_server::server::{Parts, assemble, run};
use passgate_store::{NewApiKey, NewProject, ProjectSettings, Store};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use db::{TestDb, TestStore, open_store};
pub use passgate_testkit::smtp;
pub use smtp::{Behaviour, Mail, SinkOptions, SmtpSink, TestCa, TlsMode};

/// 2026-11-21T00:00:00Z.
pub const T0: Timestamp = Timestamp(1_795_219_200_000);
pub const SECRET_B64: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXRlc3Q=";
pub const CALLBACK: &str = "https://app.example.com/auth/callback";

// ---- log capture -----------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_buffer() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        // Everything at debug, as JSON, the way production logs look.
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_current_span(true)
            .with_writer(move || writer.clone())
            .try_init();
        captured
    })
}

/// Every log line written so far in this test process.
pub fn logs() -> String {
    String::from_utf8_lossy(&logs_buffer().0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(vec![SECRET_B64.to_string()]))
}

/// Records a secret the logs must never contain.
pub fn remember_secret(s: &str) {
    assert!(!s.is_empty(), "a test remembered an empty secret; it meant to remember a value it did not get");
    secrets().lock().unwrap_or_else(|e| e.into_inner()).push(s.to_string());
}

/// SECURITY S4: no secret seen by this test process appears in its logs.
pub fn assert_logs_clean() {
    let logs = logs();
    assert!(logs.len() > 100, "the log capture saw nothing; is logging wired?");
    for secret in secrets().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        assert!(!reveals(&logs, secret), "a secret appeared in the logs");
    }
}

/// Whether `text` shows `secret`. A long secret counts wherever it stands.
/// A short one (a six-digit code) counts only as a token of its own: debug
/// logs and dumps are full of digits (microseconds, query timings, hex), and
/// a million-to-one match inside a longer number, run by thousands of
/// numbers, made this check fail at random. A leak still shows as its own
/// token (`"code":"123456"`, `code=123456`, `is 123456.`), so nothing real
/// hides behind the rule.
pub fn reveals(text: &str, secret: &str) -> bool {
    assert!(!secret.is_empty(), "an empty secret matches everything");
    if secret.len() >= 16 {
        return text.contains(secret);
    }
    let bytes = text.as_bytes();
    let part_of_a_word = |at: Option<usize>, step_back: bool| -> bool {
        let Some(i) = at else { return false };
        let Some(&c) = bytes.get(i) else { return false };
        if c.is_ascii_alphanumeric() {
            return true;
        }
        // "0.123456": a decimal point between digits joins one number.
        let beyond = if step_back { i.checked_sub(1) } else { Some(i + 1) };
        c == b'.' && beyond.and_then(|j| bytes.get(j)).is_some_and(u8::is_ascii_digit)
    };
    text.match_indices(secret).any(|(start, _)| {
        !part_of_a_word(start.checked_sub(1), true) && !part_of_a_word(Some(start + secret.len()), false)
    })
}

// ---- the server -------------------------------------------------------------

pub fn default_settings() -> ProjectSettings {
    ProjectSettings {
        name: "Acme".to_string(),
        app_name: Some("Acme App".to_string()),
        redirect_urls: vec![CALLBACK.to_string(), "http://localhost:*".to_string()],
        allowed_domains: vec![],
        allowed_emails: vec![],
        link_ttl_seconds: 900,
        emails_per_minute: 600,
        emails_per_recipient: 5,
        starts_per_ip: 30,
        otp_sends_per_email: 3,
        event_retention_seconds: 90 * 86_400,
    }
}

#[derive(Default)]
pub struct Options {
    pub settings: Option<ProjectSettings>,
    pub templates_dir: Option<std::path::PathBuf>,
    pub dev_mailbox: bool,
    pub outbox: Option<OutboxConfig>,
    /// Send through this relay instead of the sink's plain URL (`{port}` is the sink's port).
    pub smtp_url: Option<String>,
    /// Extra CA trusted for the relay (PASSGATE_SMTP_CA_FILE).
    pub smtp_ca_pem: Option<String>,
    /// Start the sink with TLS and/or AUTH.
    pub sink: Option<SinkOptions>,
    /// Give the first project this id (per-project template overrides need it up front).
    pub project_id: Option<ProjectId>,
    /// Run on the system clock instead of the manual one (for what needs
    /// real time to pass, such as leases lapsing under a slow relay).
    pub system_clock: bool,
    /// Connection timeouts and cap (the defaults otherwise).
    pub connections: Option<passgate_server::http::serve::ConnectionLimits>,
    /// How webhooks are sent (otherwise: private addresses allowed, for
    /// receivers on loopback, and a 50 ms poll).
    pub webhooks: Option<passgate_server::webhooks::WebhookConfig>,
    /// Retention and sweeping (the defaults otherwise: nothing a test
    /// writes is old enough to go).
    pub retention: Option<passgate_server::sweeper::SweepConfig>,
}

pub struct TestServer {
    pub base: String,
    /// The metrics listener's base URL.
    pub metrics_base: String,
    pub http: reqwest::Client,
    pub key: String,
    pub project_id: ProjectId,
    pub clock: ManualClock,
    pub sink: SmtpSink,
    pub store: TestStore,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        logs_buffer();
        let sink = SmtpSink::start_with(options.sink.unwrap_or_default()).await;
        let db = TestDb::new().await;
        let store = open_store(&db).await;
        let clock = ManualClock::new(T0);
        let secret = Arc::new(ServerSecret::from_base64(SECRET_B64, None).unwrap_or_else(|e| panic!("{e}")));
        let smtp_url = options.smtp_url.clone().map(|u| u.replace("{port}", &sink.port.to_string()));
        let smtp_url = secrecy::SecretString::from(smtp_url.unwrap_or_else(|| sink.url()));
        let from = "Acme <no-reply@acme.example>".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let ca = options.smtp_ca_pem.as_deref().map(str::as_bytes);
        let mailer = Mailer::new(Some(&smtp_url), ca, from, options.dev_mailbox.then(|| DevMailbox::new(T0)))
            .unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let metrics_base = format!("http://{}", metrics_listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let server_clock: Arc<dyn passgate_core::Clock> =
            if options.system_clock { Arc::new(passgate_server::SystemClock) } else { Arc::new(clock.clone()) };
        let parts = Parts {
            clock: server_clock,
            secret,
            public_url: base.clone(),
            templates: Arc::new(Templates::load(options.templates_dir.as_deref()).unwrap_or_else(|e| panic!("{e}"))),
            mailer,
            // Tests that rotate keys see the rotation at once.
            key_refresh: std::time::Duration::ZERO,
            connections: options.connections.unwrap_or_default(),
            webhooks: options.webhooks.unwrap_or_else(|| passgate_server::webhooks::WebhookConfig {
                allow_private: true,
                idle_poll: std::time::Duration::from_millis(50),
                depth_sample: std::time::Duration::from_millis(50),
                ..Default::default()
            }),
            retention: options.retention.unwrap_or_default(),
            outbox: options.outbox.unwrap_or_else(|| OutboxConfig {
                idle_poll: std::time::Duration::from_millis(50),
                ..OutboxConfig::default()
            }),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let served = match &store {
            TestStore::Sqlite(s) => launch(s.clone(), parts, listener, metrics_listener, stopped).await,
            TestStore::Postgres(s) => launch(s.clone(), parts, listener, metrics_listener, stopped).await,
        };
        let mut server = Self {
            base,
            metrics_base,
            http: reqwest::Client::new(),
            key: String::new(),
            project_id: ProjectId::from_trusted("prj_unset"),
            clock,
            sink,
            store,
            db,
            stop: Some(stop),
            served: Some(served),
        };
        let settings = options.settings.unwrap_or_else(default_settings);
        let id = options.project_id.unwrap_or_else(ProjectId::generate);
        let (project_id, key) = server.create_project_with_id(id, settings).await;
        server.project_id = project_id;
        server.key = key;
        server
    }

    /// Creates another project directly in the store; returns (id, key).
    pub async fn create_project(&self, settings: ProjectSettings) -> (ProjectId, String) {
        self.create_project_with_id(ProjectId::generate(), settings).await
    }

    async fn create_project_with_id(&self, id: ProjectId, settings: ProjectSettings) -> (ProjectId, String) {
        let key = new_project(&self.store, &id, settings).await;
        (id, key)
    }

    /// Stops the server as SIGTERM would: it stops accepting, and its
    /// outbox worker finishes the emails it is sending. Once this returns,
    /// whatever the server was going to send has been sent.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics` on the metrics listener: the exposition text.
    pub async fn scrape(&self) -> String {
        let response =
            self.http.get(format!("{}/metrics", self.metrics_base)).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        response.text().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A POST with this server's project key.
    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post_as(&self.key, path, body)
    }

    pub fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(key).json(body)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.key)
    }

    /// Starts a login for `email` with extra body fields; returns the response.
    pub async fn start_login(&self, email: &str, extra: Value) -> Reply {
        let mut body = json!({ "email": email, "validationUrl": CALLBACK });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Reply::of(self.post("/api/v2/auth/start", &body).send().await).await
    }

    /// Starts a login and returns (loginId, token from the email).
    pub async fn login_token(&self, email: &str) -> (String, String) {
        let reply = self.start_login(email, json!({})).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        let mail = self
            .sink
            .wait_for_count(email, self.sink.mails_to(email).len() + 1)
            .await
            .pop()
            .unwrap_or_else(|| panic!("no mail"));
        let token = mail.token().unwrap_or_else(|| panic!("no token in {}", mail.text));
        remember_secret(&token);
        (reply.str("loginId"), token)
    }

    pub async fn verify(&self, body: Value) -> Reply {
        Reply::of(self.post("/api/v2/auth/verify", &body).send().await).await
    }

    /// `GET /api/v2/auth/logins/{id}`'s body.
    pub async fn login_state(&self, login_id: &str) -> Value {
        Reply::of(self.get(&format!("/api/v2/auth/logins/{login_id}")).send().await).await.body
    }

    /// Polls the login until its email has this status: the worker records
    /// an outcome just after the relay accepted the message, so a test that
    /// saw the message arrive may be a moment ahead of the record.
    pub async fn wait_email_status(&self, login_id: &str, status: &str) -> Value {
        for _ in 0..200 {
            let state = self.login_state(login_id).await;
            if state["email"]["status"] == status {
                return state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("email of {login_id} never reached {status}: {}", self.login_state(login_id).await);
    }
}

/// Creates a project directly in the store; returns its secret key.
pub async fn new_project(store: &TestStore, id: &ProjectId, settings: ProjectSettings) -> String {
    let key = ApiKey::generate(KeyMode::Live);
    remember_secret(key.expose());
    let record = NewApiKey {
        id: ApiKeyId::generate(),
        project_id: id.clone(),
        key_hash: key.hash(),
        hint: key.hint(),
        created_at: T0,
    };
    let project = NewProject { id: id.clone(), settings, is_dev: false, created_at: T0 };
    store.create_project(project, record, false).await.unwrap_or_else(|e| panic!("{e}"));
    key.expose().to_string()
}

/// Assembles and serves the app on `listener` until `stopped` completes.
async fn launch<S: Store>(
    store: S,
    parts: Parts,
    listener: tokio::net::TcpListener,
    metrics_listener: tokio::net::TcpListener,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let app = assemble(store, parts).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        run(app, listener, Some(metrics_listener), stopped).await.unwrap_or_else(|e| panic!("{e}"));
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.abort();
        }
        if !std::thread::panicking() {
            assert_logs_clean();
        }
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn of(response: reqwest::Result<reqwest::Response>) -> Self {
        let response = response.unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, headers, body, text }
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_else(|| panic!("no {field} in {}", self.text)).to_string()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem document with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        assert!(self.body["requestId"].as_str().is_some_and(|r| r.starts_with("req_")));
        assert_eq!(self.body["type"], format!("urn:passgate:error:{code}"));
    }
}
