//! The requirements of SECURITY.md that live at the HTTP edge.

use passgate_core::EventKind;
use serde_json::json;

use crate::support::*;

/// SECURITY S2: after issuing, the database files hold no plaintext token,
/// code or API key.
#[tokio::test]
async fn the_database_never_holds_a_token_code_or_key_in_clear() {
    let server = TestServer::start().await;
    let started = server.start_login("ada@example.com", json!({ "includeCode": true })).await;
    assert_eq!(started.status, 202);
    let mail = server.sink.wait_for("ada@example.com").await;
    let (token, code) = (mail.token().unwrap_or_default(), mail.code().unwrap_or_default());
    remember_secret(&token);
    remember_secret(&code);
    // A second, still-queued email: its sealed payload is in the table now.
    server.sink.set_behaviour(Behaviour::RejectRecipient(451));
    server.start_login("bob@example.com", json!({ "includeCode": true })).await;
    let dump = server.db.dump();
    assert!(dump.len() > 1000, "read the database");
    assert!(!dump.contains(&token), "plaintext token in the database");
    assert!(!dump.contains(&format!("token={}", &token[..8])), "a link in clear in the database");
    assert!(!dump.contains(&server.key), "plaintext API key in the database");
    assert!(dump.contains("ada@example.com"), "sanity: the dump is readable");
}

/// SECURITY S8: a token issued by project A cannot be verified with project B's key.
#[tokio::test]
async fn tokens_and_logins_are_scoped_to_their_project() {
    let server = TestServer::start().await;
    let (other_id, other_key) = server.create_project(default_settings()).await;
    assert_ne!(other_id, server.project_id);
    let (login_id, token) = server.login_token("ada@example.com").await;
    let reply =
        Reply::of(server.post_as(&other_key, "/api/v2/auth/verify", &json!({ "token": token })).send().await).await;
    reply.assert_problem(401, "token_invalid");
    let reply = Reply::of(
        server.http.get(server.url(&format!("/api/v2/auth/logins/{login_id}"))).bearer_auth(&other_key).send().await,
    )
    .await;
    reply.assert_problem(404, "not_found");
    // Still good in its own project.
    assert_eq!(server.verify(json!({ "token": token })).await.status, 200);
}

/// SECURITY S15 at the edge: every trick is refused with validation_url_not_allowed
/// and nothing is sent.
#[tokio::test]
async fn validation_url_tricks_are_refused() {
    let server = TestServer::start().await;
    let tricks = [
        "https://evil.example.com/auth/callback",
        "https://app.example.com.evil.test/auth/callback",
        "https://app.example.com:444/auth/callback",
        "http://app.example.com/auth/callback",
        "//app.example.com/auth/callback",
        "https://app.example.com@evil.test/auth/callback",
        "https://evil.test\\@app.example.com/auth/callback",
        "https://%61pp.example.com/auth/callback",
        "https://аpp.example.com/auth/callback",
        "javascript:alert(1)//app.example.com/auth/callback",
        "https://app.example.com/auth/callbackx",
        "https://app.example.com/auth/callback/../../admin",
        "https://app.example.com/auth/callback/%2e%2e/admin",
        "https://app.example.com/auth/callback?token=planted",
        "https://app.example.com/other",
    ];
    for trick in tricks {
        let reply = server.start_login("ada@example.com", json!({ "validationUrl": trick })).await;
        reply.assert_problem(400, "validation_url_not_allowed");
    }
    // Nothing stored, so nothing can ever be sent: a login, its email and
    // its auth.started event are written together or not at all.
    assert_eq!(server.store.count_events(&server.project_id, EventKind::AuthStarted).await, 0);
    assert!(server.store.unsent_emails(T0).await.is_empty(), "nothing may be queued for a refused start");
    assert!(server.sink.mails().is_empty(), "nothing may be sent for a refused start");
}

/// SECURITY S18: control characters and over-long addresses are refused
/// before anything is stored or sent.
#[tokio::test]
async fn bad_addresses_are_refused_before_anything_is_stored() {
    let server = TestServer::start().await;
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_total = format!("{}@{}.example.com", "a".repeat(64), "b".repeat(190));
    for bad in [
        "ada@example.com\r\nBcc: victim@example.com",
        "ada@example.com\n",
        "ada\t@example.com",
        "no-at-sign",
        long_local.as_str(),
        long_total.as_str(),
        "",
    ] {
        server.start_login(bad, json!({})).await.assert_problem(400, "invalid_email");
    }
    let events = server.store.list_events(&server.project_id, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(events.is_empty(), "nothing stored: {events:?}");
    assert!(server.sink.mails().is_empty());
}

#[tokio::test]
async fn project_policy_applies_before_anything_is_stored() {
    let mut settings = default_settings();
    settings.allowed_domains = vec!["example.com".into()];
    settings.allowed_emails = vec!["guest@partner.example".into()];
    let server = TestServer::start_with(Options { settings: Some(settings), ..Options::default() }).await;
    server.start_login("mallory@evil.example", json!({})).await.assert_problem(403, "email_not_allowed");
    server.start_login("ada@sub.example.com", json!({})).await.assert_problem(403, "email_not_allowed");
    assert!(server.store.list_events(&server.project_id, 10).await.unwrap_or_default().is_empty());
    assert_eq!(server.start_login("Ada@Example.com", json!({})).await.status, 202);
    assert_eq!(server.start_login("guest@partner.example", json!({})).await.status, 202);
    for to in ["ada@example.com", "guest@partner.example"] {
        remember_secret(&server.sink.wait_for(to).await.token().unwrap_or_default());
    }
}

/// SECURITY S13: per recipient, per project and per IP, with Retry-After.
#[tokio::test]
async fn send_limits_answer_429_with_retry_after() {
    let mut settings = default_settings();
    settings.emails_per_minute = 8;
    let server = TestServer::start_with(Options { settings: Some(settings), ..Options::default() }).await;
    for _ in 0..5 {
        assert_eq!(server.start_login("ada@example.com", json!({})).await.status, 202);
    }
    let limited = server.start_login("ada@example.com", json!({})).await;
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("900"));
    // Other recipients still get through, until the project's 8 per minute are used.
    for i in 0..3 {
        assert_eq!(server.start_login(&format!("u{i}@example.com"), json!({})).await.status, 202);
    }
    let project_limited = server.start_login("zed@example.com", json!({})).await;
    project_limited.assert_problem(429, "rate_limited");
    assert_eq!(project_limited.header("retry-after"), Some("60"));
    server.clock.advance_seconds(61);
    assert_eq!(server.start_login("zed@example.com", json!({})).await.status, 202);
    let mails = server.sink.wait_for_count("ada@example.com", 5).await;
    for m in mails {
        remember_secret(&m.token().unwrap_or_default());
    }

    // Per end-user IP.
    let server = TestServer::start().await;
    for i in 0..30 {
        let r = server.start_login(&format!("v{i}@example.com"), json!({ "ipAddress": "203.0.113.7" })).await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let ip_limited = server.start_login("w@example.com", json!({ "ipAddress": "203.0.113.7" })).await;
    ip_limited.assert_problem(429, "rate_limited");
    assert!(ip_limited.header("retry-after").is_some());
    let other_ip = server.start_login("w@example.com", json!({ "ipAddress": "2001:db8::1" })).await;
    assert_eq!(other_ip.status, 202);
    server
        .start_login("x@example.com", json!({ "ipAddress": "not-an-ip" }))
        .await
        .assert_problem(400, "invalid_request");
    let _ = server.sink.wait_for_count("v0@example.com", 1).await;
    for m in server.sink.mails() {
        remember_secret(&m.token().unwrap_or_default());
    }
}

/// S13's per-recipient and per-IP limits are the project's settings
/// (`--emails-per-recipient`, `--starts-per-ip`) over the fixed windows (15
/// minutes, a minute); invites count against the same per-recipient limit.
/// A project on the defaults, on the same server, still allows five.
#[tokio::test]
async fn send_limits_are_the_projects_settings() {
    let mut settings = default_settings();
    settings.emails_per_recipient = 2;
    settings.starts_per_ip = 2;
    let server = TestServer::start_with(Options { settings: Some(settings), ..Options::default() }).await;
    for _ in 0..2 {
        assert_eq!(server.start_login("ada@example.com", json!({})).await.status, 202);
    }
    let limited = server.start_login("ada@example.com", json!({})).await;
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("900"));
    let invite = json!({ "email": "ada@example.com", "validationUrl": CALLBACK });
    Reply::of(server.post("/api/v2/invites", &invite).send().await).await.assert_problem(429, "rate_limited");

    for i in 0..2 {
        let r = server.start_login(&format!("v{i}@example.com"), json!({ "ipAddress": "203.0.113.7" })).await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let ip_limited = server.start_login("w@example.com", json!({ "ipAddress": "203.0.113.7" })).await;
    ip_limited.assert_problem(429, "rate_limited");
    server.clock.advance_seconds(61);
    assert_eq!(server.start_login("w@example.com", json!({ "ipAddress": "203.0.113.7" })).await.status, 202);

    let events = server.store.list_events(&server.project_id, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let mut reasons: Vec<_> =
        events.iter().filter(|e| e.kind == EventKind::RateLimited).filter_map(|e| e.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons, ["ip_address", "recipient", "recipient"]);

    let (_, default_key) = server.create_project(default_settings()).await;
    let start = |email: &'static str| {
        let body = json!({ "email": email, "validationUrl": CALLBACK });
        let request = server.post_as(&default_key, "/api/v2/auth/start", &body);
        async move { Reply::of(request.send().await).await }
    };
    for _ in 0..5 {
        assert_eq!(start("grace@example.com").await.status, 202);
    }
    start("grace@example.com").await.assert_problem(429, "rate_limited");

    let _ = server.sink.wait_for_count("grace@example.com", 5).await;
    let _ = server.sink.wait_for_count("ada@example.com", 2).await;
    for m in server.sink.mails() {
        remember_secret(&m.token().unwrap_or_default());
    }
}

/// SECURITY S14: start answers the same for a known and an unknown address.
#[tokio::test]
async fn start_answers_the_same_for_known_and_unknown_addresses() {
    let server = TestServer::start().await;
    let (_, token) = server.login_token("known@example.com").await;
    assert_eq!(server.verify(json!({ "token": token })).await.status, 200);
    let known = server.start_login("known@example.com", json!({})).await;
    let unknown = server.start_login("unknown@example.com", json!({})).await;
    assert_eq!(known.status, unknown.status);
    let keys = |r: &Reply| r.body.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&known), keys(&unknown));
    let names = |r: &Reply| {
        let mut n: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&known), names(&unknown));
    assert_eq!(known.text.len(), unknown.text.len());
    for m in server.sink.wait_for_count("unknown@example.com", 1).await {
        remember_secret(&m.token().unwrap_or_default());
    }
    for m in server.sink.wait_for_count("known@example.com", 2).await {
        remember_secret(&m.token().unwrap_or_default());
    }
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response_and_sends_once() {
    let server = TestServer::start().await;
    let send =
        |body: serde_json::Value| server.post("/api/v2/auth/start", &body).header("Idempotency-Key", "order-42").send();
    let body = json!({ "email": "ada@example.com", "validationUrl": CALLBACK });
    let first = Reply::of(send(body.clone()).await).await;
    let second = Reply::of(send(body.clone()).await).await;
    assert_eq!(first.status, 202);
    assert_eq!((second.status, &second.body), (202, &first.body));
    let other = json!({ "email": "bob@example.com", "validationUrl": CALLBACK });
    Reply::of(send(other).await).await.assert_problem(409, "idempotency_key_reused");
    let mails = server.sink.wait_for_count("ada@example.com", 1).await;
    remember_secret(&mails[0].token().unwrap_or_default());
    // A replay stores nothing, so it can never send anything: one login,
    // one email, one auth.started event, written together.
    assert_eq!(
        server.store.count_events(&server.project_id, EventKind::AuthStarted).await,
        1,
        "a replay sends nothing"
    );
    // Scoped to the project: another project may use the same key.
    let (_, other_key) = server.create_project(default_settings()).await;
    let elsewhere = Reply::of(
        server.post_as(&other_key, "/api/v2/auth/start", &body).header("Idempotency-Key", "order-42").send().await,
    )
    .await;
    assert_eq!(elsewhere.status, 202);
    assert_ne!(elsewhere.body["loginId"], first.body["loginId"]);
    let mails = server.sink.wait_for_count("ada@example.com", 2).await;
    remember_secret(&mails[1].token().unwrap_or_default());
}

#[tokio::test]
async fn keys_are_checked_and_revocation_is_immediate() {
    let server = TestServer::start().await;
    let body = json!({ "email": "ada@example.com", "validationUrl": CALLBACK });
    let missing = Reply::of(server.http.post(server.url("/api/v2/auth/start")).json(&body).send().await).await;
    missing.assert_problem(401, "unauthorized");
    let wrong = format!("sk_live_{}", "A".repeat(40));
    Reply::of(server.post_as(&wrong, "/api/v2/auth/start", &body).send().await)
        .await
        .assert_problem(401, "unauthorized");
    Reply::of(server.post_as("garbage", "/api/v2/auth/start", &body).send().await)
        .await
        .assert_problem(401, "unauthorized");
    let keys = server.store.list_api_keys(&server.project_id).await.unwrap_or_else(|e| panic!("{e}"));
    server.store.revoke_api_key(&keys[0].id, T0).await.unwrap_or_else(|e| panic!("{e}"));
    Reply::of(server.post("/api/v2/auth/start", &body).send().await).await.assert_problem(401, "key_revoked");
}

#[tokio::test]
async fn verify_checks_token_shape_and_body_shape() {
    let server = TestServer::start().await;
    server.verify(json!({ "token": "short" })).await.assert_problem(400, "invalid_token_format");
    server.verify(json!({ "token": format!("{}!", "a".repeat(47)) })).await.assert_problem(400, "invalid_token_format");
    server.verify(json!({ "token": "a".repeat(48) })).await.assert_problem(401, "token_invalid");
    server.verify(json!({})).await.assert_problem(400, "invalid_request");
    server
        .verify(json!({ "token": "a".repeat(48), "loginId": "lgn_x", "code": "123456" }))
        .await
        .assert_problem(400, "invalid_request");
    server.verify(json!({ "loginId": "lgn_unknown", "code": "123456" })).await.assert_problem(401, "token_invalid");
    server.verify(json!({ "loginId": "lgn_unknown", "code": "12x456" })).await.assert_problem(400, "invalid_request");
    server
        .verify(json!({ "token": "a".repeat(48), "codeVerifier": "short" }))
        .await
        .assert_problem(400, "invalid_request");
}

/// `GET /api/v2/project` names the key's own project and the issuer of its
/// JWTs (what an SDK pins `aud` and `iss` to), and nothing without a key.
#[tokio::test]
async fn the_project_endpoint_names_the_keys_project_and_the_jwt_issuer() {
    let server = TestServer::start().await;
    let reply = Reply::of(server.get("/api/v2/project").send().await).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({ "projectId": server.project_id.as_str(), "name": "Acme", "appName": "Acme App", "issuer": server.base })
    );
    let mut settings = default_settings();
    settings.name = "Other".into();
    settings.app_name = None;
    let (other, key) = server.create_project(settings).await;
    let reply = Reply::of(server.http.get(server.url("/api/v2/project")).bearer_auth(&key).send().await).await;
    assert_eq!(
        (reply.body["projectId"].as_str(), reply.body["appName"].as_str()),
        (Some(other.as_str()), Some("Other"))
    );
    let refused =
        Reply::of(server.http.get(server.url("/api/v2/project")).bearer_auth("sk_live_nope").send().await).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (401, Some("unauthorized")));
    let bare = Reply::of(server.http.get(server.url("/api/v2/project")).send().await).await;
    assert_eq!(bare.status, 401);
}

/// The log and dump checks find a short code wherever a leak would put it,
/// and not inside longer numbers that merely contain its digits.
#[test]
fn the_leak_check_finds_codes_as_tokens_and_not_inside_numbers() {
    for leaked in [r#"{"code":"123456"}"#, "code=123456&x", "Your code is 123456.", "123456", "code 123456\n"] {
        assert!(reveals(leaked, "123456"), "{leaked}");
    }
    for noise in [r#""elapsed_secs":0.0012345678"#, "02:49:52.123456Z", "usr_0193a123456b", "9123456", "0.123456"] {
        assert!(!reveals(noise, "123456"), "{noise}");
    }
    let long = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
    assert!(reveals(&format!("x{long}y"), long), "a long secret counts anywhere");
}
