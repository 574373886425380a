//! Several `passgate serve` processes on one PostgreSQL database: what
//! docs/scale-out.md promises, shown with real processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::support::db::Backend;
use crate::support::process::*;
use crate::support::*;

async fn post(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Reply {
    Reply::of(http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await).await
}

/// SECURITY S6, S13 and S21 across processes; one email per start with three workers.
#[tokio::test]
async fn three_instances_on_one_postgres_behave_as_one() {
    let db = TestDb::on(Backend::Postgres).await;
    let out = run(
        &[
            "project",
            "create",
            "--name",
            "Scale",
            "--redirect-url",
            CALLBACK,
            "--emails-per-minute",
            "100000",
            "--json",
        ],
        &[("PASSGATE_DATABASE_URL", db.url.as_str())],
    )
    .await;
    let key = serde_json::from_str::<Value>(out.stdout.trim()).unwrap_or_default()["secretKey"]
        .as_str()
        .unwrap_or_else(|| panic!("project create failed: {}", out.stderr))
        .to_string();
    remember_secret(&key);
    let sink = SmtpSink::start().await;
    let sink_url = sink.url();
    let env = smtp_env(&db.url, &sink_url);
    let dir = temp_dir();
    // Started together: their migrations race and must apply once.
    let (a, b, c) = tokio::join!(
        Running::spawn(&["serve"], &env, &dir),
        Running::spawn(&["serve"], &env, &dir),
        Running::spawn(&["serve"], &env, &dir)
    );
    let bases = [a.base.clone(), b.base.clone(), c.base.clone()];
    let http = reqwest::Client::new();

    // Started on one instance, verified on another.
    let started = post(
        &http,
        &bases[0],
        &key,
        "/api/v2/auth/start",
        json!({ "email": "ada@example.com", "validationUrl": CALLBACK }),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let token = sink.wait_for("ada@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    let verified = post(&http, &bases[1], &key, "/api/v2/auth/verify", json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    post(&http, &bases[2], &key, "/api/v2/auth/verify", json!({ "token": token }))
        .await
        .assert_problem(401, "token_used");

    // 60 concurrent verifies of one token over the three: exactly one 200.
    post(
        &http,
        &bases[2],
        &key,
        "/api/v2/auth/start",
        json!({ "email": "race@example.com", "validationUrl": CALLBACK }),
    )
    .await;
    let token = sink.wait_for("race@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    let attempts = (0..60).map(|i| {
        let request = http
            .post(format!("{}/api/v2/auth/verify", bases[i % 3]))
            .bearer_auth(&key)
            .json(&json!({ "token": token }));
        tokio::spawn(async move { Reply::of(request.send().await).await })
    });
    let mut wins = 0;
    for reply in futures::future::join_all(attempts).await {
        let reply = reply.unwrap_or_else(|e| panic!("{e}"));
        if reply.status == 200 {
            wins += 1;
        } else {
            reply.assert_problem(401, "token_used");
        }
    }
    assert_eq!(wins, 1);

    // One email per start although three outbox workers watch the queue.
    let starts = (0..30).map(|i| {
        let (http, base, key) = (http.clone(), bases[i % 3].clone(), key.clone());
        async move {
            post(
                &http,
                &base,
                &key,
                "/api/v2/auth/start",
                json!({ "email": format!("u{i}@example.com"), "validationUrl": CALLBACK }),
            )
            .await
        }
    });
    for reply in futures::future::join_all(starts).await {
        assert_eq!(reply.status, 202, "{}", reply.text);
    }
    for i in 0..30 {
        remember_secret(&sink.wait_for(&format!("u{i}@example.com")).await.token().unwrap_or_default());
    }
    // Counted once every instance has stopped (at the end), when nothing
    // can be sent any more.

    // The per-recipient limit holds across instances, even for concurrent starts.
    let burst = (0..8).map(|i| {
        let (http, base, key) = (http.clone(), bases[i % 3].clone(), key.clone());
        async move {
            post(
                &http,
                &base,
                &key,
                "/api/v2/auth/start",
                json!({ "email": "limit@example.com", "validationUrl": CALLBACK }),
            )
            .await
        }
    });
    let replies = futures::future::join_all(burst).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    for r in replies.iter().filter(|r| r.status != 202) {
        r.assert_problem(429, "rate_limited");
    }
    assert_eq!(accepted, 5, "5 per recipient per 15 minutes, whichever instance answers");
    for m in sink.wait_for_count("limit@example.com", 5).await {
        remember_secret(&m.token().unwrap_or_default());
    }
    // A code sent on one instance verifies once over the three, and a
    // stamped request seen by one is a replay on every other (S6, S21).
    let mut browser = turnkey_enclave_encrypt::AuthenticationClient::new();
    let target = browser.target_public_key().unwrap_or_else(|e| panic!("{e:?}"));
    let sent = post(
        &http,
        &bases[0],
        &key,
        "/api/v2/otp/send",
        json!({ "email": "otp@example.com", "targetPublicKey": target }),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let code = sink.wait_for("otp@example.com").await.one_time_code().unwrap_or_default();
    remember_secret(&code);
    let verifies = (0..30).map(|i| {
        let (http, base, key, otp_id, code) =
            (http.clone(), bases[i % 3].clone(), key.clone(), sent.str("otpId"), code.clone());
        async move { post(&http, &base, &key, "/api/v2/otp/verify", json!({ "otpId": otp_id, "code": code })).await }
    });
    let replies = futures::future::join_all(verifies).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "one code, one verify, whichever instance answers");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_problem(401, "otp_used");
    }
    let bundle = winners[0].body["authSession"]["credentialBundle"].as_str().unwrap_or_default().to_string();
    remember_secret(&bundle);
    let private = browser.decrypt(&bundle).unwrap_or_else(|e| panic!("{e:?}"));
    let session_key = turnkey_api_key_stamper::TurnkeyP256ApiKey::from_bytes(private, None::<Vec<u8>>)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let body = json!({ "action": "whoami", "timestampMs": now.to_string() }).to_string();
    let stamp =
        turnkey_api_key_stamper::Stamp::stamp(&session_key, body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let whoami = |base: &str| {
        http.post(format!("{base}/api/v2/session/whoami"))
            .header("content-type", "application/json")
            .header("X-Stamp", stamp.value.as_str())
            .body(body.clone())
            .send()
    };
    let first = Reply::of(whoami(&bases[1]).await).await;
    assert_eq!(first.status, 200, "{}", first.text);
    for base in [&bases[0], &bases[2], &bases[1]] {
        Reply::of(whoami(base).await).await.assert_problem(401, "stamp_replayed");
    }

    // Stopped, each instance has finished what it was sending: one email
    // per start, although three outbox workers watched the queue.
    let (mut a, mut b, mut c) = (a, b, c);
    for server in [&mut a, &mut b, &mut c] {
        assert!(server.stop().await.success());
    }
    for i in 0..30 {
        assert_eq!(sink.mails_to(&format!("u{i}@example.com")).len(), 1, "exactly one email per start");
    }
    assert_eq!(sink.mails().len(), 38, "2 before, 30 starts, 5 within the limit, 1 code");
    for server in [&a, &b, &c] {
        let output = server.output();
        assert!(
            !output.contains(&key) && !output.contains(&token) && !reveals(&output, &code) && !output.contains(&bundle),
            "a secret reached an instance's logs"
        );
    }
}

/// Instances keep API keys in memory (docs/scale-out.md); a change made
/// with the CLI, another process, reaches every one of them as soon as its
/// notification arrives — within a second at the most, the longest an entry
/// is used (the conformance suite shows, with entries kept for an hour, that
/// the notification alone does it).
#[tokio::test]
async fn key_and_project_changes_reach_every_instance_by_the_next_request() {
    let db = TestDb::on(Backend::Postgres).await;
    let db_env = [("PASSGATE_DATABASE_URL", db.url.as_str())];
    let out = run(&["project", "create", "--name", "Cached", "--redirect-url", CALLBACK, "--json"], &db_env).await;
    let created = serde_json::from_str::<Value>(out.stdout.trim()).unwrap_or_default();
    let (Some(project_id), Some(key)) = (created["projectId"].as_str(), created["secretKey"].as_str()) else {
        panic!("project create failed: {}", out.stderr)
    };
    remember_secret(key);
    let sink = SmtpSink::start().await;
    let sink_url = sink.url();
    let env = smtp_env(&db.url, &sink_url);
    let dir = temp_dir();
    let (a, b) = tokio::join!(Running::spawn(&["serve"], &env, &dir), Running::spawn(&["serve"], &env, &dir));
    let http = reqwest::Client::new();
    let start = |base: String, email: &'static str| {
        let (http, key) = (http.clone(), key.to_string());
        async move {
            let body = json!({ "email": email, "validationUrl": CALLBACK });
            post(&http, &base, &key, "/api/v2/auth/start", body).await
        }
    };
    // The first lookup starts each instance's listener; by the later ones
    // the key is served from memory.
    for (round, email) in ["a@example.com", "b@example.com", "c@example.com"].into_iter().enumerate() {
        for base in [&a.base, &b.base] {
            let reply = start(base.clone(), email).await;
            assert_eq!(reply.status, 202, "round {round}: {}", reply.text);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let updated =
        run(&["project", "update", project_id, "--redirect-url", "https://elsewhere.example/cb"], &db_env).await;
    assert_eq!(updated.code, Some(0), "{}", updated.stderr);
    for base in [&a.base, &b.base] {
        until_answered(|| start(base.clone(), "d@example.com"), 400)
            .await
            .assert_problem(400, "validation_url_not_allowed");
    }
    let restored = run(&["project", "update", project_id, "--redirect-url", CALLBACK], &db_env).await;
    assert_eq!(restored.code, Some(0), "{}", restored.stderr);
    for base in [&a.base, &b.base] {
        assert_eq!(until_answered(|| start(base.clone(), "e@example.com"), 202).await.status, 202);
    }

    let listed = run(&["key", "list", "--project", project_id, "--json"], &db_env).await;
    let listed = serde_json::from_str::<Value>(listed.stdout.trim()).unwrap_or_default();
    let key_id = listed[0]["keyId"].as_str().unwrap_or_else(|| panic!("no key listed: {listed}")).to_string();
    let revoked = run(&["key", "revoke", &key_id], &db_env).await;
    assert_eq!(revoked.code, Some(0), "{}", revoked.stderr);
    for base in [&a.base, &b.base] {
        until_answered(|| start(base.clone(), "f@example.com"), 401).await.assert_problem(401, "key_revoked");
    }
    for m in sink.mails() {
        remember_secret(&m.token().unwrap_or_default());
    }
}

/// Sends a request until it is answered with `status`, for at most the
/// one second an instance may use a key it read before a change.
async fn until_answered<F, Fut>(request: F, status: u16) -> Reply
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let reply = request().await;
        if reply.status == status || tokio::time::Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let db = TestDb::on(Backend::Postgres).await;
    let env = [("PASSGATE_DATABASE_URL", db.url.as_str())];
    let runs = (0..4).map(|_| run(&["migrate"], &env));
    for out in futures::future::join_all(runs).await {
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let created = run(&["project", "create", "--name", "x", "--redirect-url", CALLBACK, "--json"], &env).await;
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    remember_secret(
        serde_json::from_str::<Value>(created.stdout.trim()).unwrap_or_default()["secretKey"]
            .as_str()
            .unwrap_or_default(),
    );
}

/// A TCP proxy to PostgreSQL that a test can cut and restore.
struct Proxy {
    port: u16,
    cut: Arc<Mutex<bool>>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let cut = Arc::new(Mutex::new(false));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (cut2, links2) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *cut2.lock().unwrap_or_else(|e| e.into_inner()) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap_or_else(|e| e.into_inner()).push(link);
            }
        });
        Self { port, cut, links }
    }

    fn set_cut(&self, cut: bool) {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = cut;
        if cut {
            for link in self.links.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                link.abort();
            }
        }
    }
}

async fn readyz(http: &reqwest::Client, base: &str) -> u16 {
    Reply::of(http.get(format!("{base}/readyz")).send().await).await.status
}

async fn wait_readyz(http: &reqwest::Client, base: &str, want: u16) {
    for _ in 0..120 {
        if readyz(http, base).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("/readyz never answered {want}");
}

#[tokio::test]
async fn readiness_follows_the_database_and_recovers_by_itself() {
    let db = TestDb::on(Backend::Postgres).await;
    let url = url::Url::parse(&db.url).unwrap_or_else(|e| panic!("{e}"));
    let upstream = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    let mut via_proxy = url.clone();
    via_proxy.set_host(Some("127.0.0.1")).unwrap_or_else(|e| panic!("{e}"));
    via_proxy.set_port(Some(proxy.port)).unwrap_or_else(|()| panic!("port"));
    let sink = SmtpSink::start().await;
    let sink_url = sink.url();
    let mut env = smtp_env(via_proxy.as_str(), &sink_url);
    env.push(("PASSGATE_DATABASE_ACQUIRE_TIMEOUT", "2s"));
    let server = Running::spawn(&["serve"], &env, &temp_dir()).await;
    let http = reqwest::Client::new();
    assert_eq!(readyz(&http, &server.base).await, 200);

    proxy.set_cut(true);
    wait_readyz(&http, &server.base, 503).await;
    let reply = Reply::of(http.get(format!("{}/readyz", server.base)).send().await).await;
    reply.assert_problem(503, "not_ready");
    assert_eq!(
        Reply::of(http.get(format!("{}/healthz", server.base)).send().await).await.status,
        200,
        "the process is still up"
    );

    proxy.set_cut(false);
    wait_readyz(&http, &server.base, 200).await;
}
