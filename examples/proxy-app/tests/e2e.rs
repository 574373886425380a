//! End to end in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`), driven over WebDriver, against the real
//! `proxy-app` binary, a real `passgate dev` and a real SMTP sink. Every
//! page a test visits is saved as a screenshot under
//! `target/e2e-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use passgate_client::types::{CreateOrganizationRequest, NewMemberRequest};
use passgate_client::{Client, SecretKey};
use passgate_testkit::DevPassgate;
use passgate_testkit::smtp::{Mail, SmtpSink};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

/// Everything one test runs against.
struct World {
    sink: SmtpSink,
    passgate: DevPassgate,
    app: App,
    driver: Driver,
    api: Client,
}

impl World {
    async fn start() -> Self {
        let sink = SmtpSink::start().await;
        let passgate = DevPassgate::start(&sink.url()).await;
        let app = App::start(&passgate).await;
        let driver = Driver::start().await;
        let api = Client::new(&passgate.base, SecretKey::new(passgate.key.clone())).unwrap_or_else(|e| panic!("{e}"));
        Self { sink, passgate, app, driver, api }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }
}

/// The example app's binary, with its sessions in a SQLite file of its own.
struct App {
    base: String,
    _child: Child,
    dir: PathBuf,
}

impl App {
    async fn start(passgate: &DevPassgate) -> Self {
        let dir = std::env::temp_dir().join(format!("proxy-app-e2e-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // Browsers keep `Secure` (and so `__Host-`) cookies over plain http
        // only for `localhost`: the app is opened there, on a free port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let base = format!("http://localhost:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy-app"))
            .env("PASSGATE_URL", &passgate.base)
            .env("PASSGATE_API_KEY", &passgate.key)
            .env("APP_LISTEN", format!("127.0.0.1:{port}"))
            .env("APP_PUBLIC_URL", &base)
            .env("APP_DATABASE_URL", format!("sqlite://{}", dir.join("app.db").display()))
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("proxy-app did not start"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("proxy-app exited"));
        assert!(line.contains(&format!("(public URL {base})")), "{line}");
        Self { base, _child: child, dir }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// chromedriver on a free port.
struct Driver {
    url: String,
    _child: Child,
}

impl Driver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver: {e} (install Debian's chromium and chromium-driver; .ci/run does)")
            });
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{url}/status")).await.is_ok_and(|r| r.status().is_success()) {
                return Self { url, _child: child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not answer at {url}");
    }

    /// A fresh browser (its own profile: no cookies, no storage).
    async fn browser(&self) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver session: {e}"))
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn address(name: &str) -> String {
    format!("{name}-{}-{}@example.com", std::process::id(), unique())
}

/// Saves what the browser shows as `target/e2e-screenshots/<name>.png`.
async fn screenshot(browser: &Browser, name: &str) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    // target/<profile>/deps/<binary> → target/
    let target = exe.ancestors().nth(3).map(PathBuf::from).unwrap_or_default();
    let dir = target.join("e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let png = browser.screenshot().await.unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap_or_else(|e| panic!("{e}"));
}

async fn path_of(browser: &Browser) -> String {
    let url = browser.current_url().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(url.query().is_none_or(|q| !q.contains("token")), "the landing URL carries the token: {url}");
    url.path().to_string()
}

async fn text(browser: &Browser, css: &str) -> String {
    let element = match browser.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => {
            let page = browser.source().await.unwrap_or_default();
            let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            panic!("{css}: {e}\nat {url}:\n{page}")
        }
    };
    element.text().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn fill(browser: &Browser, css: &str, value: &str) {
    let element =
        browser.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    element.send_keys(value).await.unwrap_or_else(|e| panic!("{e}"));
}

async fn click(browser: &Browser, css: &str) {
    let element =
        browser.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("{e}"));
}

async fn wait_for_path(browser: &Browser, path: &str) {
    for _ in 0..300 {
        let url = browser.current_url().await.unwrap_or_else(|e| panic!("{e}"));
        if url.path() == path {
            // Arrived: and the URL it arrived at carries no token.
            path_of(browser).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser never reached {path}; it is at {}", path_of(browser).await);
}

/// `fetch` from the page, so the request carries the browser's cookies:
/// `[status, body]`.
async fn fetch(browser: &Browser, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let script = "const [method, path, body, done] = arguments;
        fetch(path, { method, headers: { 'content-type': 'application/json' }, body: body === null ? undefined : JSON.stringify(body) })
          .then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));";
    let answer = browser
        .execute_async(script, vec![json!(method), json!(path), body.unwrap_or(Value::Null)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = answer[0].as_u64().unwrap_or_default() as u16;
    let body = answer[1].as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    (status, body)
}

/// Asks for a link on the sign-in page, as a user would; the email that
/// brings it. With `shots`, screenshots of the two pages, named after it.
async fn ask_for_link(world: &World, browser: &Browser, email: &str, shots: Option<&str>) -> Mail {
    let before = world.sink.mails_to(email).len();
    browser.goto(&world.url("/")).await.unwrap_or_else(|e| panic!("{e}"));
    fill(browser, "#email", email).await;
    if let Some(prefix) = shots {
        screenshot(browser, &format!("{prefix}-1-sign-in")).await;
    }
    click(browser, "#email-link").await;
    assert!(text(browser, "#sent").await.contains(email));
    if let Some(prefix) = shots {
        screenshot(browser, &format!("{prefix}-2-check-your-email")).await;
    }
    world.sink.wait_for_count(email, before + 1).await.pop().unwrap_or_else(|| panic!("no email"))
}

/// Signs `email` in by link, through the interstitial; returns where it landed.
async fn sign_in_by_link(world: &World, browser: &Browser, email: &str) -> String {
    let mail = ask_for_link(world, browser, email, None).await;
    let link = mail.link().unwrap_or_else(|| panic!("no link in {}", mail.text));
    browser.goto(&link).await.unwrap_or_else(|e| panic!("{e}"));
    click(browser, "#continue").await;
    for _ in 0..300 {
        let url = browser.current_url().await.unwrap_or_else(|e| panic!("{e}"));
        if url.path() != "/auth/callback" {
            return path_of(browser).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the callback never redirected");
}

/// The page's HPKE, P-256 and stamp code, under Node's WebCrypto, against
/// known answers (Turnkey's published bundle): fast, and precise about
/// what fails, where the browser test below only sees the end result.
#[test]
fn the_pages_cryptography_passes_its_known_answer_tests_under_node() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/static/app.test.js");
    let out = std::process::Command::new("node")
        .args(["--test", script])
        .output()
        .unwrap_or_else(|e| panic!("node: {e} (Node.js 20+ is needed; .ci/run installs it)"));
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && shown.contains("# pass 4"), "{shown}");
}

#[tokio::test]
async fn a_link_signs_in_through_the_interstitial_and_a_scanner_leaves_it_usable() {
    let world = World::start().await;
    let browser = world.driver.browser().await;
    let email = address("ada");
    let mail = ask_for_link(&world, &browser, &email, Some("link")).await;
    let link = mail.link().unwrap_or_else(|| panic!("no link in {}", mail.text));
    assert!(link.starts_with(&world.url("/auth/callback?token=")), "{link}");

    // An email scanner opens the link (and follows what it finds): the
    // GET only renders the page, so nothing is used up.
    let scanner = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        let page = scanner.get(&link).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers().get("referrer-policy").and_then(|v| v.to_str().ok()), Some("no-referrer"));
        let html = page.text().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(html.contains("Continue signing in") && html.contains("other-device"), "{html}");
    }
    // Its POST has no CSRF cookie: refused before passgate is asked.
    let token = mail.token().unwrap_or_default();
    let forged = scanner
        .post(world.url("/auth/callback"))
        .form(&[("token", token.as_str()), ("csrf", "guess")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status(), 403);

    // The user's own click, in the browser that asked, still works.
    browser.goto(&link).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text(&browser, "h1").await, "Continue signing in");
    assert!(browser.find(Locator::Css("#other-device")).await.is_err(), "this is the browser that started the login");
    screenshot(&browser, "link-3-continue-signing-in").await;
    click(&browser, "#continue").await;
    wait_for_path(&browser, "/onboarding").await;
    assert!(text(&browser, "#welcome").await.contains(&email));
    screenshot(&browser, "link-4-onboarding").await;
    click(&browser, "#to-dashboard").await;
    wait_for_path(&browser, "/dashboard").await;
    assert_eq!(text(&browser, "#user-email").await, email);
    screenshot(&browser, "link-5-dashboard").await;

    // The same link again: used, and the page says so.
    browser.goto(&link).await.unwrap_or_else(|e| panic!("{e}"));
    click(&browser, "#continue").await;
    assert!(text(&browser, "#error").await.contains("already used"));
    screenshot(&browser, "link-6-used-again").await;
    browser.close().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn the_emailed_code_signs_in_on_the_check_your_email_page() {
    let world = World::start().await;
    let browser = world.driver.browser().await;
    let email = address("grace");
    let mail = ask_for_link(&world, &browser, &email, None).await;
    let code = mail.code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    fill(&browser, "#code", &code).await;
    screenshot(&browser, "link-code-1-typed").await;
    click(&browser, "#submit-code").await;
    wait_for_path(&browser, "/onboarding").await;
    screenshot(&browser, "link-code-2-onboarding").await;

    // A link opened in another browser: no verifier there, so the page
    // points to the code instead of failing, and the link is not used up.
    let (starter, other) = (world.driver.browser().await, world.driver.browser().await);
    let mail = ask_for_link(&world, &starter, &address("grace-again"), None).await;
    let link = mail.link().unwrap_or_default();
    other.goto(&link).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&other, "#other-device").await.contains("type the code"));
    screenshot(&other, "link-code-3-other-device").await;
    click(&other, "#continue").await;
    assert!(text(&other, "#error").await.contains("another browser"));
    screenshot(&other, "link-code-4-other-device-refused").await;
    // ...and the click in the browser that asked still signs in.
    starter.goto(&link).await.unwrap_or_else(|e| panic!("{e}"));
    click(&starter, "#continue").await;
    wait_for_path(&starter, "/onboarding").await;
    starter.close().await.unwrap_or_else(|e| panic!("{e}"));
    other.close().await.unwrap_or_else(|e| panic!("{e}"));
    browser.close().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_one_time_code_gives_the_browser_a_session_key_that_stamps_whoami() {
    let world = World::start().await;
    let browser = world.driver.browser().await;
    let email = address("otp");
    browser.goto(&world.url("/")).await.unwrap_or_else(|e| panic!("{e}"));
    // The page's script made the key pair and filled in its public key.
    let mut target = String::new();
    for _ in 0..100 {
        target = browser
            .execute("return document.getElementById('target-public-key').value", vec![])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !target.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(target.len() == 130 && target.starts_with("04"), "target public key: {target:?}");
    fill(&browser, "#email", &email).await;
    click(&browser, "#email-code").await;
    assert!(text(&browser, "#sent").await.contains(&email));
    screenshot(&browser, "otp-1-enter-code").await;
    let mail = world.sink.wait_for(&email).await;
    let code = mail.one_time_code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    fill(&browser, "#code", &code).await;
    click(&browser, "#submit-code").await;
    // The page opened the bundle, imported the session key and stamped
    // whoami through the backend; passgate's answer is on the page.
    let mut whoami = Value::Null;
    for _ in 0..300 {
        let shown = text(&browser, "#whoami").await;
        if let Ok(v) = serde_json::from_str::<Value>(&shown) {
            whoami = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&browser, "otp-2-stamped-whoami").await;
    assert_eq!(whoami["user"]["email"], json!(email), "{whoami} / status: {}", text(&browser, "#status").await);
    assert!(whoami["sessionId"].as_str().is_some_and(|s| s.starts_with("ses_")), "{whoami}");
    // The browser is signed in to the app too.
    click(&browser, "#continue").await;
    wait_for_path(&browser, "/onboarding").await;
    browser.goto(&world.url("/dashboard")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text(&browser, "#user-email").await, email);
    screenshot(&browser, "otp-3-dashboard").await;
    // The session key the browser holds is the one passgate registered.
    let events = world
        .api
        .list_events(&passgate_client::types::EventListQuery {
            kind: Some("session.created".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(events.events.iter().any(|e| e.session_id.as_deref() == whoami["sessionId"].as_str()));
    browser.close().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn another_organizations_data_is_refused_for_reads_and_writes() {
    let world = World::start().await;
    let browser = world.driver.browser().await;
    let email = address("member");
    sign_in_by_link(&world, &browser, &email).await;
    let member = |email: &str, role: &str| NewMemberRequest { email: email.into(), role: role.into() };
    let ours = world
        .api
        .create_organization(&CreateOrganizationRequest {
            name: "Ours".into(),
            members: Some(vec![member(&email, "admin")]),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .organization_id;
    let theirs = world
        .api
        .create_organization(&CreateOrganizationRequest {
            name: "Theirs".into(),
            members: Some(vec![member(&address("stranger"), "admin")]),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .organization_id;

    let (status, body) = fetch(&browser, "GET", &format!("/api/orgs/{ours}/data"), None).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("admin")), "{body}");
    let (status, _) = fetch(&browser, "POST", &format!("/api/orgs/{ours}/data"), Some(json!({"text": "hello"}))).await;
    assert_eq!(status, 201);
    // Reads and writes of the other organization, however it is named.
    assert_eq!(fetch(&browser, "GET", &format!("/api/orgs/{theirs}/data"), None).await.0, 403);
    assert_eq!(fetch(&browser, "POST", &format!("/api/orgs/{theirs}/data"), Some(json!({"text": "x"}))).await.0, 403);
    assert_eq!(fetch(&browser, "GET", &format!("/api/orgs/{ours}/data?orgId={theirs}"), None).await.0, 403);
    let smuggled = json!({"text": "x", "organizationId": theirs});
    assert_eq!(fetch(&browser, "POST", &format!("/api/orgs/{ours}/data"), Some(smuggled)).await.0, 403);
    assert_eq!(fetch(&browser, "GET", "/api/orgs/org_doesnotexist/data", None).await.0, 403);

    browser.goto(&world.url(&format!("/dashboard?org={ours}"))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&browser, "#orgs").await.contains("Ours"));
    assert!(text(&browser, "#org-data").await.contains("hello"));
    screenshot(&browser, "orgs-1-dashboard").await;
    browser.goto(&world.url(&format!("/dashboard?org={theirs}"))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(browser.find(Locator::Css("#org-data")).await.is_err(), "another organization's data on the dashboard");

    // Without a session: 401.
    let anonymous = reqwest::get(world.url(&format!("/api/orgs/{ours}/data"))).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anonymous.status(), 401);
    // A membership removed in passgate is refused on the next request.
    let me = world
        .api
        .find_user_by_email(&email)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no user"));
    world.api.remove_member(&ours, &me.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fetch(&browser, "GET", &format!("/api/orgs/{ours}/data"), None).await.0, 403);
    browser.close().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn logout_and_sign_out_everywhere_take_effect_on_the_next_request() {
    let world = World::start().await;
    let (first, second) = (world.driver.browser().await, world.driver.browser().await);
    let email = address("twice");
    sign_in_by_link(&world, &first, &email).await;
    sign_in_by_link(&world, &second, &email).await;
    first.goto(&world.url("/dashboard")).await.unwrap_or_else(|e| panic!("{e}"));
    let rows = first.find_all(Locator::Css("tr.session")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 2, "both browsers' sessions are listed");
    screenshot(&first, "sessions-1-two-sessions").await;

    click(&first, "#revoke-all").await;
    wait_for_path(&first, "/").await;
    second.goto(&world.url("/dashboard")).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&second, "/").await;
    assert_eq!(fetch(&second, "GET", "/api/orgs/org_x/data", None).await.0, 401);
    screenshot(&second, "sessions-2-signed-out-everywhere").await;

    sign_in_by_link(&world, &second, &email).await;
    second.goto(&world.url("/dashboard")).await.unwrap_or_else(|e| panic!("{e}"));
    click(&second, "#logout").await;
    wait_for_path(&second, "/").await;
    second.goto(&world.url("/dashboard")).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&second, "/").await;
    screenshot(&second, "sessions-3-logged-out").await;
    first.close().await.unwrap_or_else(|e| panic!("{e}"));
    second.close().await.unwrap_or_else(|e| panic!("{e}"));
    drop(world.passgate);
}
