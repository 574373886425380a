//! The example apps in `examples/` (Node + Express, Python + Flask), end to
//! end: the real `passgate` binary with a project made by its CLI, a real
//! SMTP sink, the app as a child process, and this test as the browser (a
//! cookie store, form posts, redirects followed). What docs/integrate.md
//! promises is checked here: the link's GET never uses it up, the PKCE
//! verifier in the browser's cookie is what makes it work, the app checks
//! the JWT before it starts its own session.
//!
//! The apps' dependencies are installed by `scripts/test.sh`; when they are
//! missing, these tests fail and say so (they never skip).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support::process::*;
use crate::support::*;

#[tokio::test]
async fn node_express_example_signs_in_end_to_end() {
    signs_in_end_to_end(Example::NodeExpress).await;
}

#[tokio::test]
async fn python_flask_example_signs_in_end_to_end() {
    signs_in_end_to_end(Example::PythonFlask).await;
}

/// docs/integrate.md quotes the examples: every code block after a
/// `<!-- quoted from PATH -->` line must still be in PATH, as written, so the
/// guide cannot drift from the code that is tested.
#[test]
fn the_integration_guide_quotes_the_examples_as_they_are() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut quoted = 0;
    for doc in ["docs/integrate.md", "docs/webhooks.md"] {
        let guide = read(doc);
        let mut lines = guide.lines();
        while let Some(line) = lines.next() {
            let Some(path) = line.strip_prefix("<!-- quoted from ").and_then(|l| l.strip_suffix(" -->")) else {
                continue;
            };
            let fence = lines.next().unwrap_or_default();
            assert!(fence.starts_with("```"), "{doc}: a code block must follow the line quoting {path}");
            let block = lines.by_ref().take_while(|l| !l.starts_with("```")).collect::<Vec<_>>().join("\n");
            assert!(read(path).contains(&block), "{doc} quotes {path}, which no longer has:\n{block}");
            quoted += 1;
        }
    }
    assert!(quoted >= 12, "only {quoted} quoted blocks found: did the marker change?");
}

#[derive(Debug, Clone, Copy)]
enum Example {
    NodeExpress,
    PythonFlask,
}

const SESSION_SECRET: &str = "an-example-session-secret-of-32-chars-or-more";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

impl Example {
    /// The command that runs the app, or a failure that says how to
    /// install what it needs.
    fn command(self) -> Command {
        let missing = |what: &str| -> ! {
            panic!("{what} is missing: run scripts/test.sh, which installs the examples' dependencies before the tests")
        };
        match self {
            Example::NodeExpress => {
                let dir = examples_dir().join("node-express");
                if !dir.join("node_modules/express").is_dir() || !dir.join("node_modules/jose").is_dir() {
                    missing("examples/node-express/node_modules (npm ci)");
                }
                let mut command = Command::new("node");
                command.arg("server.js").current_dir(dir);
                command
            }
            Example::PythonFlask => {
                let dir = examples_dir().join("python-flask");
                let python = dir.join(".venv/bin/python");
                if !python.exists() {
                    missing(
                        "examples/python-flask/.venv (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)",
                    );
                }
                let mut command = Command::new(python);
                command.arg("app.py").current_dir(dir).env("PYTHONUNBUFFERED", "1");
                command
            }
        }
    }
}

/// An example app running as a child process, and everything it printed.
struct App {
    _child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl App {
    /// Starts the app on a port of its choosing (PORT=0) and waits until it
    /// says where it listens.
    async fn spawn(example: Example, passgate_url: &str, project_id: &str, key: &str) -> Self {
        Self::spawn_with(example, passgate_url, project_id, key, &[]).await
    }

    /// As [`spawn`](Self::spawn), with more settings (they win over the defaults).
    async fn spawn_with(
        example: Example,
        passgate_url: &str,
        project_id: &str,
        key: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut command = example.command();
        // Only what the test sets: nothing inherited may change the app's setup.
        for (name, _) in std::env::vars() {
            if name.starts_with("PASSGATE_")
                || ["APP_BASE_URL", "PORT", "HOST", "SESSION_SECRET"].contains(&name.as_str())
            {
                command.env_remove(name);
            }
        }
        let mut child = command
            .env("PASSGATE_URL", passgate_url)
            .env("PASSGATE_API_KEY", key)
            .env("PASSGATE_PROJECT_ID", project_id)
            .env("SESSION_SECRET", SESSION_SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {example:?} ({e}): is it installed? run scripts/test.sh"));
        let lines = collect_output(&mut child);
        let mut app = Self { _child: child, base: String::new(), lines };
        // 30 s: starting an interpreter on a loaded CI machine can be slow.
        for _ in 0..1200 {
            if let Some(base) = app.output().lines().find_map(|l| l.strip_prefix("listening on ")) {
                app.base = base.split_whitespace().next().unwrap_or_default().to_string();
                return app;
            }
            if let Ok(Some(status)) = app._child.try_wait() {
                panic!("{example:?} exited ({status}) before listening:\n{}", app.output());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{example:?} did not say where it listens; output so far:\n{}", app.output());
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A browser: a cookie store, redirects followed.
struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
    origin: Url,
}

impl Browser {
    fn new(app: &App) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().unwrap_or_else(|e| panic!("{e}"));
        Self { http, jar, origin: app.base.parse().unwrap_or_else(|e| panic!("{e}")) }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        let header = self.jar.cookies(&self.origin)?;
        let header = header.to_str().ok()?.to_string();
        header.split("; ").find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
    }

    /// Sets a cookie as the app would have (host-only, path `/`).
    fn set_cookie(&self, name: &str, value: &str) {
        self.jar.add_cookie_str(&format!("{name}={value}; Path=/"), &self.origin);
    }

    async fn get(&self, url: &str) -> Page {
        Page::of(self.http.get(url).send().await).await
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        Page::of(self.http.post(url).form(form).send().await).await
    }
}

/// A response as a browser ends up with it (after redirects).
struct Page {
    status: u16,
    url: Url,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    async fn of(response: reqwest::Result<reqwest::Response>) -> Self {
        let response = response.unwrap_or_else(|e| panic!("request failed: {e}"));
        let (status, url, headers) = (response.status().as_u16(), response.url().clone(), response.headers().clone());
        let html = response.text().await.unwrap_or_else(|e| panic!("{e}"));
        Self { status, url, headers, html }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The interstitial: a form that POSTs the token back, and nothing that
    /// would submit it by itself.
    fn assert_interstitial(&self, token: &str) {
        assert_eq!(self.status, 200, "{}", self.html);
        assert!(self.html.contains(r#"method="post" action="/callback""#), "{}", self.html);
        assert!(self.html.contains(&format!(r#"name="token" value="{token}""#)), "{}", self.html);
        assert!(self.html.contains("Continue signing in"), "{}", self.html);
        assert!(!self.html.contains("<script"), "the interstitial waits for a person: {}", self.html);
        assert_eq!(self.header("referrer-policy"), "no-referrer", "the token must not leak through Referer");
        assert_eq!(self.header("cache-control"), "no-store");
    }
}

/// A project made with the real CLI, allowing the apps' callback on any
/// port of 127.0.0.1; returns (project id, secret key).
async fn create_example_project(db: &str) -> (String, String) {
    let out = run(
        &["project", "create", "--name", "Example", "--redirect-url", "http://127.0.0.1:*/callback", "--json"],
        &[("PASSGATE_DATABASE_URL", db)],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let created: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stderr));
    let key = created["secretKey"].as_str().unwrap_or_default().to_string();
    remember_secret(&key);
    (created["projectId"].as_str().unwrap_or_default().to_string(), key)
}

/// A login's status as passgate sees it (the test asks with the project's key).
async fn login_status(passgate: &Running, key: &str, login_id: &str) -> String {
    let url = format!("{}/api/v2/auth/logins/{login_id}", passgate.base);
    let reply = Reply::of(reqwest::Client::new().get(url).bearer_auth(key).send().await).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.str("status")
}

/// docs/webhooks.md's Node receiver: registered with passgate, it gets a
/// login's events, verifies each with the `standardwebhooks` package,
/// keeps each once, and refuses a forged one.
#[tokio::test]
async fn node_express_example_receives_verified_webhooks() {
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let (project_id, key) = create_example_project(&test_db.url).await;
    let sink_url = sink.url();
    let mut env = smtp_env(&test_db.url, &sink_url);
    env.push(("PASSGATE_WEBHOOK_ALLOW_PRIVATE", "1"));
    let passgate = Running::spawn(&["serve"], &env, &temp_dir()).await;
    // The endpoint is registered before the app starts (it needs the
    // secret), so the app gets a port chosen here.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        probe.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/webhooks/passgate");
    let registered: Value = http
        .post(format!("{}/api/v2/webhooks", passgate.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "url": url, "events": ["auth.started", "email.sent"] }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = registered["secret"].as_str().unwrap_or_default().to_string();
    remember_secret(&secret);
    let port_text = port.to_string();
    let app = App::spawn_with(
        Example::NodeExpress,
        &passgate.base,
        &project_id,
        &key,
        &[("PORT", &port_text), ("PASSGATE_WEBHOOK_SECRET", &secret)],
    )
    .await;
    let started = http
        .post(format!("{}/api/v2/auth/start", passgate.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "email": "grace@example.com", "validationUrl": app.url("/callback") }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.status(), 202);
    let mut received = Value::Null;
    for _ in 0..400 {
        received = http
            .get(app.url("/webhooks/received"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if received["events"].as_array().is_some_and(|e| e.len() >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let events = received["events"].as_array().cloned().unwrap_or_default();
    let mut kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["auth.started", "email.sent"], "{received}");
    assert!(events.iter().all(|e| e["webhookId"].as_str().is_some_and(|id| id.starts_with("evt_"))));
    assert!(events.iter().all(|e| e["data"]["email"] == "grace@example.com"));

    // A forged delivery (signed with another secret) is refused.
    let forged = http
        .post(app.url("/webhooks/passgate"))
        .header("content-type", "application/json")
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
                .to_string(),
        )
        .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        .body(r#"{"type":"auth.verified","timestamp":"2026-12-04T00:00:00Z","data":{}}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status(), 400);
    let output = app.output();
    assert!(!output.contains(&secret), "the webhook secret reached the app's output");
}

async fn signs_in_end_to_end(example: Example) {
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let (project_id, key) = create_example_project(&test_db.url).await;
    let passgate = Running::spawn(&["serve"], &smtp_env(&test_db.url, &sink.url()), &temp_dir()).await;
    let app = App::spawn(example, &passgate.base, &project_id, &key).await;
    let mut secrets = vec![key.clone()];

    // The sign-in form, then "check your email".
    let browser = Browser::new(&app);
    let home = browser.get(&app.url("/")).await;
    assert_eq!(home.status, 200);
    assert!(home.html.contains(r#"action="/login""#), "{}", home.html);
    let sent = browser.post(&app.url("/login"), &[("email", "Ada@Example.com")]).await;
    assert_eq!(sent.status, 200, "{}", sent.html);
    assert!(sent.html.contains("Check your email"), "{}", sent.html);
    let verifier = browser.cookie("pg_verifier").unwrap_or_else(|| panic!("no PKCE verifier cookie"));
    assert_eq!(verifier.len(), 43, "a 32-byte verifier, base64url: {verifier}");
    let login_id = browser.cookie("pg_login_id").unwrap_or_else(|| panic!("no login id cookie"));
    assert!(login_id.starts_with("lgn_"), "{login_id}");
    secrets.push(verifier.clone());

    // The email links to the app's callback.
    let mail = sink.wait_for("ada@example.com").await;
    let token = mail.token().unwrap_or_else(|| panic!("no token in {}", mail.text));
    remember_secret(&token);
    secrets.push(token.clone());
    let link = mail.link().unwrap_or_default();
    assert_eq!(link, app.url(&format!("/callback?token={token}")));

    // Opening the link shows the interstitial and uses nothing up: a mail
    // scanner fetching it (twice, even) leaves the login pending.
    for _ in 0..2 {
        browser.get(&link).await.assert_interstitial(&token);
        assert_eq!(login_status(&passgate, &key, &login_id).await, "pending");
    }

    // Another browser (no verifier cookie) posting the form gets nowhere,
    // and the login is still there for the right one.
    let elsewhere = Browser::new(&app);
    elsewhere.get(&link).await.assert_interstitial(&token);
    let refused = elsewhere.post(&app.url("/callback"), &[("token", &token)]).await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(refused.html.contains("in the browser where you asked for it"), "{}", refused.html);
    assert_eq!(elsewhere.get(&app.url("/me")).await.status, 401);
    assert_eq!(login_status(&passgate, &key, &login_id).await, "pending");

    // A tampered verifier: passgate refuses it (code_verifier_mismatch) and
    // keeps the login; nobody is signed in.
    browser.set_cookie("pg_verifier", &"A".repeat(43));
    let tampered = browser.post(&app.url("/callback"), &[("token", &token)]).await;
    assert_eq!(tampered.status, 401, "{}", tampered.html);
    assert!(tampered.html.contains("in the browser where you asked for it"), "{}", tampered.html);
    assert_eq!(browser.get(&app.url("/me")).await.status, 401);
    assert_eq!(login_status(&passgate, &key, &login_id).await, "pending");

    // The right browser presses the button: signed in, on /me.
    browser.set_cookie("pg_verifier", &verifier);
    let me = browser.post(&app.url("/callback"), &[("token", &token)]).await;
    assert_eq!((me.status, me.url.path()), (200, "/me"), "{}", me.html);
    assert!(me.html.contains("ada@example.com"), "{}", me.html);
    assert_eq!(login_status(&passgate, &key, &login_id).await, "verified");
    // The app's own session carries on; the login's cookies are gone.
    assert!(browser.cookie("session").is_some());
    assert_eq!((browser.cookie("pg_verifier"), browser.cookie("pg_login_id")), (None, None));
    let again = browser.get(&app.url("/me")).await;
    assert!(again.status == 200 && again.html.contains("ada@example.com"), "{}", again.html);

    // The same link a second time: used.
    let replay = Browser::new(&app);
    replay.get(&link).await.assert_interstitial(&token);
    replay.set_cookie("pg_verifier", &verifier);
    let used = replay.post(&app.url("/callback"), &[("token", &token)]).await;
    assert_eq!(used.status, 401, "{}", used.html);
    assert!(used.html.contains("already used"), "{}", used.html);
    assert_eq!(replay.get(&app.url("/me")).await.status, 401);

    // The session is the app's to end.
    let signed_out = browser.post(&app.url("/logout"), &[]).await;
    assert_eq!((signed_out.status, signed_out.url.path()), (200, "/"));
    assert_eq!(browser.get(&app.url("/me")).await.status, 401);

    // The fallback: the code from the email, typed into the browser that
    // started the login. A wrong code first.
    let other_device = Browser::new(&app);
    let sent = other_device.post(&app.url("/login"), &[("email", "grace@example.com")]).await;
    assert!(sent.status == 200 && sent.html.contains(r#"action="/code""#), "{}", sent.html);
    let mail = sink.wait_for("grace@example.com").await;
    let code = mail.code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    remember_secret(&code);
    secrets.push(code.clone());
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap_or_default() + 1) % 1_000_000);
    let refused = other_device.post(&app.url("/code"), &[("code", &wrong)]).await;
    assert_eq!(refused.status, 401, "{}", refused.html);
    assert!(refused.html.contains("That code is not right") && refused.html.contains(r#"action="/code""#));
    let me = other_device.post(&app.url("/code"), &[("code", &code)]).await;
    assert_eq!((me.status, me.url.path()), (200, "/me"), "{}", me.html);
    assert!(me.html.contains("grace@example.com"), "{}", me.html);

    // The app checks the JWT itself: configured for another project (its
    // `aud`), the same flow signs nobody in, although passgate verified.
    let misconfigured = App::spawn(example, &passgate.base, "prj_00000000000000000000000000000000", &key).await;
    let browser = Browser::new(&misconfigured);
    browser.post(&misconfigured.url("/login"), &[("email", "eve@example.com")]).await;
    let login_id = browser.cookie("pg_login_id").unwrap_or_else(|| panic!("no login id cookie"));
    let mail = sink.wait_for("eve@example.com").await;
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    secrets.push(token.clone());
    let refused = browser.post(&misconfigured.url("/callback"), &[("token", &token)]).await;
    assert_eq!(refused.status, 502, "{}", refused.html);
    assert_eq!(login_status(&passgate, &key, &login_id).await, "verified");
    assert_eq!(browser.get(&misconfigured.url("/me")).await.status, 401);
    assert!(misconfigured.output().contains("did not check out"), "{}", misconfigured.output());

    // No token, code, verifier or key in anyone's output.
    for output in [app.output(), misconfigured.output(), passgate.output()] {
        for secret in &secrets {
            assert!(!reveals(&output, secret), "a secret reached the output:\n{output}");
        }
    }
    assert_clean(&passgate.output());
}
