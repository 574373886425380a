//! The real `passgate` binary: CLI, configuration refusals, JSON logs,
//! dev mode, SIGTERM, and surviving SIGKILL without losing an email, a code
//! or a session key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::*;
use crate::support::*;

#[tokio::test]
async fn help_lists_every_command() {
    let out = run(&["--help"], &[]).await;
    assert_eq!(out.code, Some(0));
    for command in ["serve", "dev", "migrate", "project", "key", "signing-key"] {
        assert!(out.stdout.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing:\n{}", out.stdout);
    }
    let out = run(&["config", "example"], &[]).await;
    assert!(out.stdout.contains("# smtp_url"));
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_bad_setting() {
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let smtp = ("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525");
    let secret = ("PASSGATE_SECRET_KEY", SECRET_B64);
    let database = ("PASSGATE_DATABASE_URL", db.as_str());
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![secret, database], "PASSGATE_SMTP_URL"),
        (vec![smtp, database], "PASSGATE_SECRET_KEY"),
        (vec![smtp, secret, ("PASSGATE_SECRET_KEY", "dG9vIHNob3J0")], "at least 32 bytes"),
        (vec![smtp, secret, ("PASSGATE_DATABASE_URL", "mysql://localhost/x")], "database_url"),
        (vec![smtp, secret, ("PASSGATE_DATABASE_URL", "sqlite:///proc/passgate-cannot-create/x.db")], "database"),
        (vec![smtp, secret, database, ("PASSGATE_LISTEN", "not-an-address")], "listen"),
        // Credentials are never sent in clear, so this cannot be served.
        (
            vec![secret, database, ("PASSGATE_SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:2525?tls=none")],
            "never sent without TLS",
        ),
        // A password in the database URL's query stays out of the message.
        (
            vec![
                smtp,
                secret,
                (
                    "PASSGATE_DATABASE_URL",
                    "postgres://passgate@127.0.0.1:1/passgate?password=hunter2&connect_timeout=2",
                ),
            ],
            "database",
        ),
    ];
    for (envs, expected) in cases {
        let out = tokio::time::timeout(Duration::from_secs(20), run(&["serve"], &envs))
            .await
            .unwrap_or_else(|_| panic!("serve did not exit for {envs:?}"));
        assert_ne!(out.code, Some(0), "{envs:?} started");
        assert!(out.stderr.contains("error:") && out.stderr.contains(expected), "{envs:?}: {}", out.stderr);
        assert!(!out.stderr.contains(SECRET_B64) && !out.stderr.contains("hunter2"), "{}", out.stderr);
    }
}

/// A server started with a secret that does not open what the database
/// holds (its signing key) refuses to start, says what to do, and serves
/// nothing; with the old secret kept as the previous one, it starts.
#[tokio::test]
async fn a_wrong_secret_stops_the_start() {
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let dir = temp_dir();
    let mut first = Running::spawn(&["serve"], &smtp_env(&test_db.url, &sink.url()), &dir).await;
    assert!(first.stop().await.success());

    let other = "YW5vdGhlci1zZWNyZXQtZm9yLXRoZS13cm9uZy1rZXk=";
    let mut envs = smtp_env(&test_db.url, "smtp://127.0.0.1:9");
    envs.retain(|(name, _)| *name != "PASSGATE_SECRET_KEY");
    envs.push(("PASSGATE_SECRET_KEY", other));
    envs.push(("PASSGATE_LISTEN", "127.0.0.1:0"));
    let out = tokio::time::timeout(Duration::from_secs(20), run(&["serve"], &envs))
        .await
        .unwrap_or_else(|_| panic!("serve did not exit"));
    assert_ne!(out.code, Some(0), "started with the wrong secret");
    assert!(
        out.stderr.contains("PASSGATE_SECRET_KEY") && out.stderr.contains("PASSGATE_SECRET_KEY_PREVIOUS"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("listen_addr") && !out.stderr.contains("listen_addr"), "it listened: {}", out.stdout);
    assert!(!out.stderr.contains(other) && !out.stderr.contains(SECRET_B64));

    // Rotating: the new secret current, the old one previous.
    envs.push(("PASSGATE_SECRET_KEY_PREVIOUS", SECRET_B64));
    let mut rotated = Running::spawn(&["serve"], &envs, &dir).await;
    assert!(rotated.stop().await.success());
}

/// `tls=none` sends mail to the relay unencrypted: allowed for a local relay,
/// said at start-up.
#[tokio::test]
async fn plain_smtp_is_announced_at_start() {
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let plain = format!("{}?tls=none", sink.url());
    let dir = temp_dir();
    let mut server = Running::spawn(&["serve"], &smtp_env(&test_db.url, &plain), &dir).await;
    let warning = server.wait_for_line("tls=none").await;
    assert!(warning.contains("WARN") || warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(server.stop().await.success());
}

#[tokio::test]
async fn the_cli_manages_projects_keys_and_signing_keys() {
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let env = [("PASSGATE_DATABASE_URL", db.as_str())];
    let created = run(
        &[
            "project",
            "create",
            "--name",
            "Acme",
            "--redirect-url",
            "https://app.example.com/cb",
            "--redirect-url",
            "http://localhost:*",
            "--allowed-domain",
            "Example.COM",
            "--link-ttl",
            "10m",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let created: Value =
        serde_json::from_str(created.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", created.stdout));
    let project_id = created["projectId"].as_str().unwrap_or_default().to_string();
    let first_key = created["secretKey"].as_str().unwrap_or_default().to_string();
    remember_secret(&first_key);
    assert!(project_id.starts_with("prj_") && first_key.starts_with("sk_live_"));
    assert_eq!(created.as_object().map(|o| o.len()), Some(2));

    // Which database it wrote to: on standard error, never a password.
    let listed = run(&["project", "list", "--json"], &env).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let listed: Value = serde_json::from_str(listed.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", listed.stdout));
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1));
    assert_eq!(listed[0]["projectId"], project_id.as_str());
    let plain = run(&["project", "list"], &env).await;
    assert!(plain.stdout.contains(&project_id) && plain.stdout.contains("Acme"), "{}", plain.stdout);
    assert!(plain.stderr.starts_with("database: "), "{}", plain.stderr);
    if db.starts_with("sqlite://") {
        assert!(plain.stderr.contains(db.trim_start_matches("sqlite://")), "{}", plain.stderr);
    }

    let shown = run(&["project", "show", &project_id, "--json"], &env).await;
    let shown: Value = serde_json::from_str(shown.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown["name"], "Acme");
    assert_eq!(shown["appName"], "Acme");
    assert_eq!(shown["redirectUrls"], json!(["https://app.example.com/cb", "http://localhost:*"]));
    assert_eq!(shown["allowedDomains"], json!(["example.com"]));
    assert_eq!(shown["allowedEmails"], json!([]));
    assert_eq!(shown["linkTtlSeconds"], 600);
    assert_eq!(shown["emailsPerMinute"], 600);
    assert_eq!(shown["emailsPerRecipient"], 5);
    assert_eq!(shown["startsPerIp"], 30);
    assert_eq!(shown["otpSendsPerEmail"], 3);
    assert_eq!(shown["eventRetentionSeconds"], 90 * 86_400);
    assert!(shown["createdAt"].as_str().is_some_and(|c| c.ends_with('Z')));
    assert!(!shown.to_string().contains(&first_key));

    let updated = run(
        &[
            "project",
            "update",
            &project_id,
            "--app-name",
            "Acme App",
            "--allowed-email",
            "Guest@Partner.example",
            "--emails-per-minute",
            "5000",
            "--emails-per-recipient",
            "10",
            "--starts-per-ip",
            "100",
            "--otp-sends-per-email",
            "5",
            "--event-retention",
            "0",
            "--json",
        ],
        &env,
    )
    .await;
    let updated: Value = serde_json::from_str(updated.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(updated["appName"], "Acme App");
    assert_eq!(updated["allowedEmails"], json!(["guest@partner.example"]));
    assert_eq!(updated["allowedDomains"], json!(["example.com"]), "lists not given are kept");
    assert_eq!(updated["emailsPerMinute"], 5000);
    assert_eq!([&updated["emailsPerRecipient"], &updated["startsPerIp"], &updated["otpSendsPerEmail"]], [10, 100, 5],);
    assert_eq!(updated["eventRetentionSeconds"], 0, "0 keeps events forever");
    let shown = run(&["project", "show", &project_id], &env).await;
    assert!(shown.stdout.contains("event retention:      forever"), "{}", shown.stdout);
    let retained = run(&["project", "update", &project_id, "--event-retention", "365d", "--json"], &env).await;
    let retained: Value = serde_json::from_str(retained.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(retained["eventRetentionSeconds"], 365 * 86_400);
    assert_eq!(retained["startsPerIp"], 100, "settings not given are kept");

    // The limits and the retention at creation.
    let limited = run(
        &[
            "project",
            "create",
            "--name",
            "Limited",
            "--redirect-url",
            "https://app.example.com/cb",
            "--emails-per-recipient",
            "2",
            "--starts-per-ip",
            "7",
            "--otp-sends-per-email",
            "1",
            "--event-retention",
            "30d",
            "--json",
        ],
        &env,
    )
    .await;
    assert_eq!(limited.code, Some(0), "{}", limited.stderr);
    let limited: Value = serde_json::from_str(limited.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    remember_secret(limited["secretKey"].as_str().unwrap_or_default());
    let limited_id = limited["projectId"].as_str().unwrap_or_default().to_string();
    let shown = run(&["project", "show", &limited_id, "--json"], &env).await;
    let shown: Value = serde_json::from_str(shown.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        [
            &shown["emailsPerRecipient"],
            &shown["startsPerIp"],
            &shown["otpSendsPerEmail"],
            &shown["eventRetentionSeconds"]
        ],
        [2, 7, 1, 30 * 86_400],
    );

    // A bad limit or retention is refused with a message naming the flag.
    for (flag, value) in [
        ("--starts-per-ip", "0"),
        ("--starts-per-ip", "100001"),
        ("--emails-per-recipient", "1001"),
        ("--otp-sends-per-email", "0"),
        ("--event-retention", "5x"),
        ("--event-retention", "30s"),
        ("--event-retention", "3651d"),
    ] {
        let out = run(&["project", "update", &project_id, flag, value], &env).await;
        assert_ne!(out.code, Some(0), "{flag} {value} succeeded");
        assert!(out.stderr.contains(flag), "{flag} {value}: {}", out.stderr);
        let out = run(
            &["project", "create", "--name", "Bad", "--redirect-url", "https://app.example.com/cb", flag, value],
            &env,
        )
        .await;
        assert_ne!(out.code, Some(0), "create with {flag} {value} succeeded");
        assert!(out.stderr.contains(flag), "create with {flag} {value}: {}", out.stderr);
    }

    for bad in [
        vec!["project", "update", &project_id, "--link-ttl", "2h"],
        vec!["project", "update", &project_id, "--redirect-url", "https://u@app.example.com/cb"],
        vec!["project", "update", &project_id, "--allowed-email", "not-an-email"],
        vec!["project", "show", "prj_missing"],
        vec!["project", "create", "--name", "x"],
    ] {
        let out = run(&bad, &env).await;
        assert_ne!(out.code, Some(0), "{bad:?} succeeded");
        assert!(!out.stderr.is_empty());
    }

    let key = run(&["key", "create", "--project", &project_id, "--json"], &env).await;
    let key: Value = serde_json::from_str(key.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    let key_id = key["keyId"].as_str().unwrap_or_default().to_string();
    remember_secret(key["secretKey"].as_str().unwrap_or_default());
    assert!(key_id.starts_with("key_"));
    let listed = run(&["key", "list", "--project", &project_id, "--json"], &env).await;
    let listed: Value = serde_json::from_str(listed.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(!listed.to_string().contains(&first_key), "keys are never shown again");
    let revoked = run(&["key", "revoke", &key_id], &env).await;
    assert_eq!(revoked.code, Some(0), "{}", revoked.stderr);
    let listed = run(&["key", "list", "--project", &project_id, "--json"], &env).await;
    let listed: Value = serde_json::from_str(listed.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    let revoked_entry =
        listed.as_array().and_then(|l| l.iter().find(|k| k["keyId"] == key_id.as_str())).cloned().unwrap_or_default();
    assert!(revoked_entry["revokedAt"].is_string());
    assert_ne!(run(&["key", "revoke", "key_missing"], &env).await.code, Some(0));

    // signing-key rotate needs the secret; with it, the JWKS gains a key.
    assert_ne!(run(&["signing-key", "rotate"], &env).await.code, Some(0));
    let with_secret = [env[0], ("PASSGATE_SECRET_KEY", SECRET_B64)];
    let rotated = run(&["signing-key", "rotate"], &with_secret).await;
    assert_eq!(rotated.code, Some(0), "{}", rotated.stderr);
    let rotated_again = run(&["signing-key", "rotate"], &with_secret).await;
    assert_eq!(rotated_again.code, Some(0));
    // No server ran, so the first rotation made the first key and the second retired it.
    let keys = crate::support::open_store(&test_db).await.signing_keys().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1);
}

/// SECURITY S25 / the crash test: SIGKILL after start returned and before
/// the email was sent; after a restart the email arrives exactly once.
#[tokio::test]
async fn a_killed_server_loses_no_email_and_sends_it_once() {
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let key = create_project(&db).await;
    // A relay that accepts connections and never answers: the first server
    // claims the email and hangs in the SMTP greeting.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let black_hole_url = format!("smtp://{}", black_hole.local_addr().unwrap_or_else(|e| panic!("{e}")));
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = black_hole.accept().await {
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
        }
    });
    let dir = temp_dir();
    let mut first = Running::spawn(&["serve"], &smtp_env(&db, &black_hole_url), &dir).await;
    let http = reqwest::Client::new();
    let started = post_json(
        &first.base,
        &key,
        "/api/v2/auth/start",
        &json!({ "email": "ada@example.com", "validationUrl": CALLBACK }),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let login_id = started.str("loginId");
    first.wait_for_line("outbox worker started").await;
    for _ in 0..200 {
        if !held.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state =
        Reply::of(http.get(format!("{}/api/v2/auth/logins/{login_id}", first.base)).bearer_auth(&key).send().await)
            .await;
    assert_eq!(state.body["email"]["status"], "queued", "not sent before the kill");
    first.child.kill().await.unwrap_or_else(|e| panic!("{e}"));
    assert_clean(&first.output());

    let sink = SmtpSink::start().await;
    let mut second = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let mail = sink.wait_for("ada@example.com").await;
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    assert_eq!(token.len(), 48);
    let state_of = |base: String| {
        let (http, key) = (http.clone(), key.clone());
        let url = format!("{base}/api/v2/auth/logins/{login_id}");
        async move { Reply::of(http.get(url).bearer_auth(&key).send().await).await }
    };
    // Settled as sent once: no worker can claim it again.
    let mut state = state_of(second.base.clone()).await;
    for _ in 0..200 {
        if state.body["email"]["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        state = state_of(second.base.clone()).await;
    }
    assert_eq!(state.body["email"], json!({ "status": "sent", "attempts": 1 }));
    let verified = post_json(&second.base, &key, "/api/v2/auth/verify", &json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    // Stopped, the server has finished whatever it was sending: the count
    // is final.
    assert!(second.stop().await.success());
    assert_eq!(sink.mails().len(), 1, "exactly one email after the crash");
    let output = second.output();
    assert!(!output.contains(&token) && !output.contains(&key), "secrets in the server's logs");
    assert_clean(&output);
}

/// Sends a one-time code through a running server and reads it from the
/// sink: (otpId, code).
async fn code_through(server: &Running, key: &str, sink: &SmtpSink, body: Value) -> (String, String) {
    let http = reqwest::Client::new();
    let sent =
        Reply::of(http.post(format!("{}/api/v2/otp/send", server.base)).bearer_auth(key).json(&body).send().await)
            .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let to = body["email"].as_str().unwrap_or_default();
    let code = sink.wait_for(to).await.one_time_code().unwrap_or_default();
    remember_secret(&code);
    (sent.str("otpId"), code)
}

/// Verifies a one-time code through a running server.
async fn verify_through(server: &Running, key: &str, body: Value) -> Reply {
    let http = reqwest::Client::new();
    Reply::of(http.post(format!("{}/api/v2/otp/verify", server.base)).bearer_auth(key).json(&body).send().await).await
}

/// The crash test for codes and session keys: a code sent before a SIGKILL
/// verifies after the restart (with the target key given at send), the
/// session key it minted survives the next SIGKILL, and so does the
/// record of a stamped request (its replay is still refused).
#[tokio::test]
async fn codes_session_keys_and_stamp_records_survive_a_kill() {
    use turnkey_api_key_stamper::{Stamp, TurnkeyP256ApiKey};
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let key = create_project(&db).await;
    let sink = SmtpSink::start().await;
    let dir = temp_dir();
    let http = reqwest::Client::new();
    let mut browser = turnkey_enclave_encrypt::AuthenticationClient::new();
    let target = browser.target_public_key().unwrap_or_else(|e| panic!("{e:?}"));

    let mut first = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let (otp_id, code) =
        code_through(&first, &key, &sink, json!({ "email": "ada@example.com", "targetPublicKey": target })).await;
    first.child.kill().await.unwrap_or_else(|e| panic!("{e}"));

    let mut second = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let verified = verify_through(&second, &key, json!({ "otpId": otp_id, "code": code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let bundle = verified.body["authSession"]["credentialBundle"].as_str().unwrap_or_default().to_string();
    remember_secret(&bundle);
    let private = browser.decrypt(&bundle).unwrap_or_else(|e| panic!("{e:?}"));
    let session_key = TurnkeyP256ApiKey::from_bytes(private, None::<Vec<u8>>).unwrap_or_else(|e| panic!("{e:?}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let body = json!({ "action": "whoami", "timestampMs": now.to_string() }).to_string();
    let stamp = session_key.stamp(body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let whoami = |base: String| {
        let (http, body, stamp) = (http.clone(), body.clone(), stamp.value.clone());
        async move {
            let request = http
                .post(format!("{base}/api/v2/session/whoami"))
                .header("content-type", "application/json")
                .header("X-Stamp", stamp)
                .body(body);
            Reply::of(request.send().await).await
        }
    };
    let who = whoami(second.base.clone()).await;
    assert_eq!(who.status, 200, "{}", who.text);
    assert_eq!(who.body["user"]["email"], "ada@example.com");
    second.child.kill().await.unwrap_or_else(|e| panic!("{e}"));

    let mut third = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    whoami(third.base.clone()).await.assert_problem(401, "stamp_replayed");
    let fresh = json!({ "action": "whoami", "timestampMs": (now + 1).to_string() }).to_string();
    let fresh_stamp = session_key.stamp(fresh.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let again = Reply::of(
        http.post(format!("{}/api/v2/session/whoami", third.base))
            .header("content-type", "application/json")
            .header("X-Stamp", fresh_stamp.value)
            .body(fresh)
            .send()
            .await,
    )
    .await;
    assert_eq!(again.status, 200, "the session key survived the kill: {}", again.text);
    assert!(third.stop().await.success());
    for output in [first.output(), second.output(), third.output()] {
        assert!(!reveals(&output, &code) && !output.contains(&bundle), "secrets in the server's logs");
        assert_clean(&output);
    }
}

/// A code sent before a rotation of the server secret verifies after it:
/// codes are keyed-hashed under the current secret and checked under the
/// previous one too (PASSGATE_SECRET_KEY_PREVIOUS).
#[tokio::test]
async fn a_code_sent_before_a_secret_rotation_verifies_after_it() {
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let key = create_project(&db).await;
    let sink = SmtpSink::start().await;
    let dir = temp_dir();
    let mut before = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let (otp_id, code) =
        code_through(&before, &key, &sink, json!({ "email": "ada@example.com", "alphanumeric": true })).await;
    assert!(before.stop().await.success());

    let new_secret = "YW5vdGhlci1zZWNyZXQtZm9yLXRoZS13cm9uZy1rZXk=";
    let sink_url = sink.url();
    let mut envs = smtp_env(&db, &sink_url);
    envs.retain(|(name, _)| *name != "PASSGATE_SECRET_KEY");
    envs.push(("PASSGATE_SECRET_KEY", new_secret));
    envs.push(("PASSGATE_SECRET_KEY_PREVIOUS", SECRET_B64));
    let mut after = Running::spawn(&["serve"], &envs, &dir).await;
    let verified = verify_through(&after, &key, json!({ "otpId": otp_id, "code": code.to_lowercase() })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert!(after.stop().await.success());
    for output in [before.output(), after.output()] {
        assert!(!reveals(&output, &code) && !output.contains(new_secret), "secrets in the server's logs");
        assert_clean(&output);
    }
}

/// Outside dev mode logs are JSON lines; SIGTERM drains and exits cleanly.
#[tokio::test]
async fn serve_logs_json_and_stops_cleanly_on_sigterm() {
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let key = create_project(&db).await;
    let sink = SmtpSink::start().await;
    let dir = temp_dir();
    let mut server = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let http = reqwest::Client::new();
    let started = post_json(
        &server.base,
        &key,
        "/api/v2/auth/start",
        &json!({ "email": "ada@example.com", "validationUrl": CALLBACK, "includeCode": true }),
    )
    .await;
    assert_eq!(started.status, 202);
    let mail = sink.wait_for("ada@example.com").await;
    let (token, code) = (mail.token().unwrap_or_default(), mail.code().unwrap_or_default());
    // Metrics: on their own listener only.
    let metrics_base = server.metrics_base.clone().unwrap_or_else(|| panic!("no metrics_addr logged"));
    let scraped = http.get(format!("{metrics_base}/metrics")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scraped.status(), 200);
    let scraped = scraped.text().await.unwrap_or_default();
    assert!(scraped.lines().any(|l| l == "passgate_logins_started_total 1"), "{scraped}");
    let public = http.get(format!("{}/metrics", server.base)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(public.status(), 404, "metrics leaked onto the public listener");
    let pid = server.child.id().unwrap_or_default();
    let killed =
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit after SIGTERM"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit status {status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = server.output();
    assert!(output.contains("passgate stopped"), "{output}");
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON log line: {line}");
    }
    for secret in [&token, &code, &key] {
        assert!(!reveals(&output, secret), "a secret reached the server's logs");
    }
}

/// A metrics address that cannot be bound stops `serve` with a clear
/// message; `passgate dev` warns and runs on without metrics; `off` turns
/// the listener off.
#[tokio::test]
async fn a_busy_metrics_address_stops_serve_but_not_dev() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let taken = taken.local_addr().unwrap_or_else(|e| panic!("{e}")).to_string();
    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let mut env = smtp_env(&db, "smtp://127.0.0.1:2525");
    env.push(("PASSGATE_METRICS_LISTEN", &taken));
    env.push(("PASSGATE_LISTEN", "127.0.0.1:0"));
    let refused = run(&["serve"], &env).await;
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains(&taken), "the error does not name the address: {}", refused.stderr);
    assert!(
        refused.stderr.contains("PASSGATE_METRICS_LISTEN"),
        "the error does not name the setting: {}",
        refused.stderr
    );
    // The public listener's port taken: the error names its setting.
    let mut public = smtp_env(&db, "smtp://127.0.0.1:2525");
    public.push(("PASSGATE_LISTEN", &taken));
    public.push(("PASSGATE_METRICS_LISTEN", "off"));
    let refused = run(&["serve"], &public).await;
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("PASSGATE_LISTEN") && refused.stderr.contains(&taken), "{}", refused.stderr);

    let dir = temp_dir();
    let dev = Running::spawn(&["dev"], &[("PASSGATE_METRICS_LISTEN", &taken)], &dir).await;
    assert!(dev.metrics_base.is_none());
    dev.wait_for_line("cannot listen for metrics").await;
    let healthy = reqwest::get(format!("{}/healthz", dev.base)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(healthy.status(), 200);
    drop(dev);

    let dir = temp_dir();
    let off = Running::spawn(&["dev"], &[("PASSGATE_METRICS_LISTEN", "off")], &dir).await;
    assert!(off.metrics_base.is_none());
    let line = off.wait_for_line("listen_addr").await;
    assert!(line.contains("metrics_addr=off") || line.contains(r#""metrics_addr":"off""#), "{line}");
    // The start-up line says which database is in use: a SQLite file by its absolute path.
    let database = format!("sqlite://{}", dir.join(".passgate/passgate.db").display());
    assert!(line.contains(&database), "{line}");
}

#[tokio::test]
async fn dev_mode_needs_nothing_and_prints_its_key() {
    let dir = temp_dir();
    let dev = Running::spawn(&["dev"], &[], &dir).await;
    let key_line = dev.wait_for_line("Secret key:").await;
    let key = key_line.split_whitespace().last().unwrap_or_default().to_string();
    assert!(key.starts_with("sk_test_"), "{key_line}");
    assert!(dir.join(".passgate/passgate.db").exists());
    let http = reqwest::Client::new();
    let started = post_json(
        &dev.base,
        &key,
        "/api/v2/auth/start",
        &json!({ "email": "ada@example.com", "validationUrl": "http://localhost:5173/callback" }),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let mut page = String::new();
    for _ in 0..100 {
        page = http
            .get(format!("{}/_dev/mailbox", dev.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        if page.contains("token=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token: String =
        page.split("token=").nth(1).unwrap_or_default().chars().take_while(char::is_ascii_alphanumeric).collect();
    assert_eq!(token.len(), 48, "{page}");
    let verified = post_json(&dev.base, &key, "/api/v2/auth/verify", &json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    drop(dev);

    // The same key after a restart (derived from the kept dev secret).
    let again = Running::spawn(&["dev"], &[], &dir).await;
    assert!(again.wait_for_line("Secret key:").await.ends_with(&key));

    let public = run(&["dev"], &[("PASSGATE_LISTEN", "0.0.0.0:0")]).await;
    assert_ne!(public.code, Some(0));
    assert!(public.stderr.contains("loopback"), "{}", public.stderr);
}

/// A database that cannot be reached says why (the connection's own error),
/// not that a pool timed out; for `serve` and for the admin commands.
#[tokio::test]
async fn an_unreachable_database_says_why() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("postgres://postgres@127.0.0.1:{port}/passgate");
    let mut serve_env = smtp_env(&url, "smtp://127.0.0.1:9");
    serve_env.push(("PASSGATE_LISTEN", "127.0.0.1:0"));
    for (args, env) in
        [(vec!["serve"], serve_env), (vec!["project", "list"], vec![("PASSGATE_DATABASE_URL", url.as_str())])]
    {
        let out = tokio::time::timeout(Duration::from_secs(30), run(&args, &env))
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not exit"));
        assert_ne!(out.code, Some(0), "{args:?}");
        assert!(out.stderr.contains("Connection refused"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("pool timed out"), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}")),
            "the error does not name the database: {}",
            out.stderr
        );
    }
}

/// Under systemd with socket activation, `serve` takes its listeners from
/// the sockets systemd passes (the public one, then the metrics one)
/// instead of binding, and names the real address as its public URL.
#[tokio::test]
async fn serve_takes_its_sockets_from_systemd() {
    let activate = "/usr/bin/systemd-socket-activate";
    assert!(
        std::path::Path::new(activate).exists(),
        "{activate} is missing: install systemd (apt-get install systemd), as .ci/run does"
    );
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (public, metrics) = (free_port(), free_port());
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let mut command = tokio::process::Command::new(activate);
    command.args(["-l", &format!("127.0.0.1:{public}"), "-l", &format!("127.0.0.1:{metrics}")]);
    // systemd-socket-activate gives the service only the variables it is told.
    let sink_url = sink.url();
    for (name, value) in smtp_env(&test_db.url, &sink_url) {
        command.arg("-E").arg(format!("{name}={value}"));
    }
    let (out_path, err_path) = {
        let dir = temp_dir();
        (dir.join("stdout"), dir.join("stderr"))
    };
    let stdout = std::fs::File::create(&out_path).unwrap_or_else(|e| panic!("{e}"));
    let stderr = std::fs::File::create(&err_path).unwrap_or_else(|e| panic!("{e}"));
    let mut child = command
        .arg(env!("CARGO_BIN_EXE_passgate"))
        .arg("serve")
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));

    // The first connection starts the server, which accepts it on systemd's socket.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap_or_else(|e| panic!("{e}"));
    let mut healthy = None;
    for _ in 0..100 {
        match http.get(format!("http://127.0.0.1:{public}/healthz")).send().await {
            Ok(reply) => {
                healthy = Some(reply.status().as_u16());
                break;
            }
            // Until systemd-socket-activate has bound the socket.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let logs = || {
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
        format!("{}{}", read(&out_path), read(&err_path))
    };
    assert_eq!(healthy, Some(200), "{}", logs());
    let scrape = http.get(format!("http://127.0.0.1:{metrics}/metrics")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap_or_default().contains("passgate_"), "not the metrics listener");
    let started = logs();
    let line = started.lines().find(|l| l.contains("listen_addr")).unwrap_or_else(|| panic!("{started}"));
    assert!(line.contains("socket_activated=true") || line.contains(r#""socket_activated":true"#), "{line}");
    assert!(line.contains(&format!("http://127.0.0.1:{public}")), "the public URL is not the socket's: {line}");
    let _ = child.kill().await;
    assert_clean(&logs());
}

/// The operator CLI reads what the server wrote: organizations listed and
/// shown, a user shown with their organizations, then erased (only with
/// `--yes`), after which they are gone.
#[tokio::test]
async fn operators_read_organizations_and_erase_users() {
    let test_db = TestDb::new().await;
    let sink = SmtpSink::start().await;
    let db = test_db.url.clone();
    let db_env = [("PASSGATE_DATABASE_URL", db.as_str())];
    let created = run(&["project", "create", "--name", "Ops", "--redirect-url", CALLBACK, "--json"], &db_env).await;
    let created: Value =
        serde_json::from_str(created.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", created.stderr));
    let (project, key) =
        (created["projectId"].as_str().unwrap_or_default(), created["secretKey"].as_str().unwrap_or_default());
    remember_secret(key);
    let dir = temp_dir();
    let mut server = Running::spawn(&["serve"], &smtp_env(&db, &sink.url()), &dir).await;
    let org = reqwest::Client::new()
        .post(format!("{}/api/v2/organizations", server.base))
        .bearer_auth(key)
        .json(&json!({ "name": "Night Shift", "members": [{ "email": "ada@example.com", "role": "owner" }] }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(org.status(), 201);
    let org: Value = org.json().await.unwrap_or_else(|e| panic!("{e}"));
    let org = org["organizationId"].as_str().unwrap_or_default().to_string();
    assert!(server.stop().await.success());

    let listed = run(&["org", "list", "--project", project], &db_env).await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(listed.stdout.contains(&org) && listed.stdout.contains("1 members  Night Shift"), "{}", listed.stdout);
    let shown = run(&["org", "show", "--project", project, &org, "--json"], &db_env).await;
    let shown: Value = serde_json::from_str(shown.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", shown.stderr));
    assert_eq!(shown["members"][0]["email"], "ada@example.com");
    assert_eq!(shown["members"][0]["role"], "owner");

    let user = run(&["user", "show", "--project", project, "ADA@example.com", "--json"], &db_env).await;
    let user: Value = serde_json::from_str(user.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", user.stderr));
    assert_eq!(user["organizationIds"], json!([org]));
    let user_id = user["id"].as_str().unwrap_or_default();
    assert!(user_id.starts_with("usr_"));

    let unconfirmed = run(&["user", "delete", "--project", project, user_id], &db_env).await;
    assert_ne!(unconfirmed.code, Some(0));
    assert!(unconfirmed.stderr.contains("--yes"), "{}", unconfirmed.stderr);
    let erased = run(&["user", "delete", "--project", project, user_id, "--yes"], &db_env).await;
    assert_eq!(erased.code, Some(0), "{}", erased.stderr);
    assert!(
        erased.stdout.contains(&format!("Erased {user_id}")) && erased.stdout.contains("1 memberships"),
        "{}",
        erased.stdout
    );
    let gone = run(&["user", "show", "--project", project, user_id], &db_env).await;
    assert_ne!(gone.code, Some(0));
    assert!(gone.stderr.contains(&format!("no user {user_id}")), "{}", gone.stderr);
    let elsewhere = run(&["org", "show", "--project", "prj_0000", &org], &db_env).await;
    assert!(elsewhere.stderr.contains("no project prj_0000"), "{}", elsewhere.stderr);
    let emptied = run(&["org", "list", "--project", project], &db_env).await;
    assert!(emptied.stdout.contains("0 members  Night Shift"), "{}", emptied.stdout);
}

/// S25 for webhooks: SIGKILL while a delivery is in flight (the receiver
/// has it and has not answered); after a restart the delivery is made
/// again, once its lease lapses, with the same `webhook-id`: at least once,
/// never lost.
#[tokio::test]
async fn a_webhook_in_flight_at_a_kill_is_delivered_again_with_its_id() {
    use crate::support::receiver::{HANG, Receiver};

    let test_db = TestDb::new().await;
    let db = test_db.url.clone();
    let key = create_project(&db).await;
    let sink = SmtpSink::start().await;
    let receiver = Receiver::start(HANG).await;
    let dir = temp_dir();
    let sink_url = sink.url();
    let mut env: Vec<(&str, &str)> =
        smtp_env(&db, &sink_url).into_iter().filter(|(name, _)| *name != "PASSGATE_OUTBOX_LEASE").collect();
    // Each call times out at half the lease: long enough that the kill
    // lands while the first server still waits for the answer.
    env.extend([("PASSGATE_OUTBOX_LEASE", "6s"), ("PASSGATE_WEBHOOK_ALLOW_PRIVATE", "1")]);
    let mut first = Running::spawn(&["serve"], &env, &dir).await;
    let http = reqwest::Client::new();
    let registered =
        post_json(&first.base, &key, "/api/v2/webhooks", &json!({ "url": receiver.url(), "events": ["auth.started"] }))
            .await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    let secret = registered.str("secret");
    remember_secret(&secret);
    let webhook_id = registered.str("webhookId");
    let started = post_json(
        &first.base,
        &key,
        "/api/v2/auth/start",
        &json!({ "email": "ada@example.com", "validationUrl": CALLBACK }),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let held = receiver.wait_for(1).await;
    first.child.kill().await.unwrap_or_else(|e| panic!("{e}"));
    assert_clean(&first.output());
    let id = held[0].header("webhook-id").to_string();
    assert!(id.starts_with("evt_"));

    receiver.answer(200);
    let mut second = Running::spawn(&["serve"], &env, &dir).await;
    let again = receiver.wait_for(2).await;
    assert_eq!(again[1].header("webhook-id"), id, "the same webhook-id after the restart");
    assert_eq!(again[1].body, held[0].body, "the same body");
    let url = format!("{}/api/v2/webhooks/{webhook_id}/deliveries", second.base);
    let mut listed = Value::Null;
    for _ in 0..200 {
        listed = Reply::of(http.get(&url).bearer_auth(&key).send().await).await.body;
        if listed["deliveries"][0]["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(listed["deliveries"][0]["status"], "sent", "{listed}");
    assert!(second.stop().await.success());
    assert_eq!(receiver.received().len(), 2, "delivered again once, not more");
    for output in [first.output(), second.output()] {
        assert_clean(&output);
        assert!(!output.contains(&secret) && !output.contains(&key), "a secret reached the server's logs");
    }
}

/// On PostgreSQL, a cluster without autovacuum is named at start: the
/// sweeper's deletes would never be reused and the database would grow as
/// if nothing were swept. The warning follows the cluster's real setting.
#[tokio::test]
async fn serve_warns_when_postgres_runs_without_autovacuum() {
    let test_db = TestDb::new().await;
    if !test_db.url.starts_with("postgres") {
        return; // A PostgreSQL setting; the SQLite run has nothing to check.
    }
    let pool = sqlx::PgPool::connect(&test_db.url).await.unwrap_or_else(|e| panic!("{e}"));
    let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pool.close().await;
    let sink = SmtpSink::start().await;
    let dir = temp_dir();
    let mut server = Running::spawn(&["serve"], &smtp_env(&test_db.url, &sink.url()), &dir).await;
    server.wait_for_line("listen_addr").await;
    let warned = server.output().contains("autovacuum off");
    assert_eq!(warned, setting == "off", "autovacuum={setting}: {}", server.output());
    assert!(server.stop().await.success());
}
