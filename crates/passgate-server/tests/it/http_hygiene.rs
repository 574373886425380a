//! Problem documents, request ids, body limits, JSON strictness, health,
//! the dev mailbox's absence, and the pinned OpenAPI document.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_413() {
    let server = TestServer::start().await;
    let big = json!({ "email": "ada@example.com", "validationUrl": CALLBACK, "state": "x".repeat(70 * 1024) });
    let reply = Reply::of(server.post("/api/v2/auth/start", &big).send().await).await;
    reply.assert_problem(413, "payload_too_large");
}

/// SECURITY S24 (the cases that exist so far): malformed JSON, unknown
/// fields, wrong types, oversized strings and wrong media types are all 4xx
/// problem documents, never a 500.
#[tokio::test]
async fn malformed_requests_get_our_problem_documents() {
    let server = TestServer::start().await;
    let raw = |body: &'static str, content_type: &'static str| {
        server
            .http
            .post(server.url("/api/v2/auth/start"))
            .bearer_auth(&server.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    Reply::of(raw("{not json", "application/json").await).await.assert_problem(400, "invalid_request");
    Reply::of(raw("[1,2]", "application/json").await).await.assert_problem(400, "invalid_request");
    Reply::of(raw("", "application/json").await).await.assert_problem(400, "invalid_request");
    Reply::of(raw(r#"{"email":"a@b.example","validationUrl":"x"} trailing"#, "application/json").await)
        .await
        .assert_problem(400, "invalid_request");
    Reply::of(raw(r#"{"email":"a@b.example"}"#, "text/plain").await)
        .await
        .assert_problem(415, "unsupported_media_type");

    let typo = server.start_login("ada@example.com", json!({ "stat": "x" })).await;
    typo.assert_problem(400, "invalid_request");
    assert!(typo.body["detail"].as_str().is_some_and(|d| d.contains("stat")), "{}", typo.text);

    let secret_like = "s3cretValueThatMustNotBeEchoed";
    let wrong_type = server.start_login("ada@example.com", json!({ "includeCode": secret_like })).await;
    wrong_type.assert_problem(400, "invalid_request");
    assert!(!wrong_type.text.contains(secret_like), "values are never echoed: {}", wrong_type.text);

    server
        .start_login("ada@example.com", json!({ "state": "s".repeat(513) }))
        .await
        .assert_problem(400, "invalid_request");
    server
        .start_login("ada@example.com", json!({ "userAgent": "u".repeat(513) }))
        .await
        .assert_problem(400, "invalid_request");
    server.start_login("ada@example.com", json!({ "locale": "en_US!" })).await.assert_problem(400, "invalid_request");
    server.start_login("ada@example.com", json!({ "email": 5 })).await.assert_problem(400, "invalid_request");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start().await;
    let ok = Reply::of(server.http.get(server.url("/healthz")).send().await).await;
    assert_eq!((ok.status, ok.body["status"].as_str()), (200, Some("ok")));
    assert!(ok.header("x-request-id").is_some_and(|id| id.starts_with("req_")));

    let missing = Reply::of(server.http.get(server.url("/no/such/route")).send().await).await;
    missing.assert_problem(404, "not_found");
    assert_eq!(missing.header("x-request-id"), missing.body["requestId"].as_str());

    let wrong_method = Reply::of(server.http.delete(server.url("/api/v2/auth/start")).send().await).await;
    wrong_method.assert_problem(405, "method_not_allowed");

    let traced =
        Reply::of(server.http.get(server.url("/healthz")).header("x-request-id", "req_from-proxy-1").send().await)
            .await;
    assert_eq!(traced.header("x-request-id"), Some("req_from-proxy-1"));
    let injected =
        Reply::of(server.http.get(server.url("/healthz")).header("x-request-id", "bad id\"{}").send().await).await;
    assert!(injected.header("x-request-id").is_some_and(|id| id.starts_with("req_") && !id.contains(' ')));
}

#[tokio::test]
async fn readiness_and_api_response_headers() {
    let server = TestServer::start().await;
    let ready = Reply::of(server.http.get(server.url("/readyz")).send().await).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));
    let reply = server.start_login("ada@example.com", json!({})).await;
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    remember_secret(&server.sink.wait_for("ada@example.com").await.token().unwrap_or_default());
    // Once the database is gone, readiness says so.
    server.store.close().await;
    let not_ready = Reply::of(server.http.get(server.url("/readyz")).send().await).await;
    not_ready.assert_problem(503, "not_ready");
}

#[tokio::test]
async fn the_dev_mailbox_exists_only_in_dev_mode() {
    let server = TestServer::start().await;
    Reply::of(server.http.get(server.url("/_dev/mailbox")).send().await).await.assert_problem(404, "not_found");

    let dev = TestServer::start_with(Options { dev_mailbox: true, ..Options::default() }).await;
    dev.start_login("ada@example.com", json!({})).await;
    let token = dev.sink.wait_for("ada@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    let page = Reply::of(dev.http.get(dev.url("/_dev/mailbox")).send().await).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(page.text.contains("Sign in to Acme App"));
    assert!(page.text.contains(&format!("<a href=\"{CALLBACK}?token={token}\">")), "clickable link");
}

/// Metrics count what happened, under route templates and closed labels:
/// no email address, token, key or login id reaches a scrape (SECURITY S4),
/// and the public listener has no /metrics.
#[tokio::test]
async fn metrics_count_logins_without_personal_data() {
    let server = TestServer::start().await;
    let email = "metrics.ada@example.com";
    let (login_id, token) = server.login_token(email).await;
    assert_eq!(server.verify(json!({ "token": token })).await.status, 200);
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_used");
    server.login_state(&login_id).await;

    // The worker counts a sent email just after the relay accepted it.
    let mut text = server.scrape().await;
    for _ in 0..100 {
        if text.lines().any(|l| l == r#"passgate_email_attempts_total{outcome="sent"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = server.scrape().await;
    }
    for line in [
        "passgate_logins_started_total 1",
        "passgate_logins_verified_total 1",
        r#"passgate_verify_failures_total{reason="token_used"} 1"#,
        r#"passgate_verify_failures_total{reason="token_invalid"} 0"#,
        r#"passgate_email_attempts_total{outcome="sent"} 1"#,
        r#"passgate_http_requests_total{route="/api/v2/auth/start",method="POST",status="202"} 1"#,
        r#"passgate_http_requests_total{route="/api/v2/auth/verify",method="POST",status="200"} 1"#,
        r#"passgate_http_requests_total{route="/api/v2/auth/verify",method="POST",status="401"} 1"#,
        r#"passgate_http_requests_total{route="/api/v2/auth/logins/{login_id}",method="GET",status="200"} 1"#,
        r#"passgate_http_request_duration_seconds_count{route="/api/v2/auth/verify"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    for private in [email, token.as_str(), server.key.as_str(), login_id.as_str(), server.project_id.as_str()] {
        assert!(!text.contains(private), "a scrape shows {private:?}");
    }

    let public = Reply::of(server.http.get(server.url("/metrics")).send().await).await;
    public.assert_problem(404, "not_found");
}

/// A client may invent any HTTP method; each is counted and logged as
/// `other`, so neither the scrape nor the logs grow with them.
#[tokio::test]
async fn invented_methods_leave_the_scrape_and_the_logs_as_they_were() {
    let server = TestServer::start().await;
    let marker = "PASSGATEINVENTEDMETHOD";
    for i in 0..200 {
        let name = format!("{marker}{i}{}", "Z".repeat(2_000));
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let reply = Reply::of(server.http.request(method, server.url("/healthz")).send().await).await;
        assert!(reply.status == 405 || reply.status == 404, "{}", reply.status);
    }
    let text = server.scrape().await;
    assert!(!text.contains(marker), "an invented method reached the scrape");
    assert!(text.len() < 16 * 1024, "the scrape grew to {} bytes", text.len());
    let methods: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.split("method=\"").nth(1)?.split('"').next()).collect();
    let known = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other"];
    assert!(methods.iter().all(|m| known.contains(m)), "{methods:?}");
    assert!(methods.contains("other"), "{methods:?}");
    assert!(!logs().contains(marker), "an invented method reached the logs");
}

/// A dev server answers only requests for a loopback name: a web page that
/// reaches it through DNS rebinding sends its own name as `Host`.
#[tokio::test]
async fn a_dev_server_refuses_requests_for_other_hosts() {
    let dev = TestServer::start_with(Options { dev_mailbox: true, ..Options::default() }).await;
    let port = dev.base.rsplit(':').next().unwrap_or_default().to_string();
    for host in [format!("rebind.evil.example:{port}"), "evil.example".to_string(), format!("127.0.0.2:{port}")] {
        let reply = Reply::of(dev.http.get(dev.url("/_dev/mailbox")).header("host", &host).send().await).await;
        reply.assert_problem(421, "misdirected_request");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let reply = Reply::of(dev.http.get(dev.url("/_dev/mailbox")).header("host", &host).send().await).await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.text);
    }
    // Outside dev mode the Host is not the server's concern.
    let server = TestServer::start().await;
    let reply = Reply::of(server.http.get(server.url("/healthz")).header("host", "evil.example").send().await).await;
    assert_eq!(reply.status, 200);
}
