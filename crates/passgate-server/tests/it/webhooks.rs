//! Webhooks end to end: the real router and worker, a receiver on
//! loopback, real SMTP to the sink, and the `standardwebhooks` crate to
//! check every signature.

use std::sync::Arc;
use std::time::Duration;

use passgate_server::webhooks::WebhookConfig;
use serde_json::{Value, json};

use crate::support::receiver::{Receiver, ScriptedDns};
use crate::support::*;

/// Registers an endpoint; returns (webhookId, secret).
async fn register(server: &TestServer, url: &str, events: &[&str]) -> (String, String) {
    let reply = Reply::of(server.post("/api/v2/webhooks", &json!({ "url": url, "events": events })).send().await).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let secret = reply.str("secret");
    remember_secret(&secret);
    (reply.str("webhookId"), secret)
}

async fn deliveries(server: &TestServer, webhook_id: &str) -> Vec<Value> {
    let reply = Reply::of(server.get(&format!("/api/v2/webhooks/{webhook_id}/deliveries")).send().await).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Polls an endpoint's deliveries until `done` holds of them.
async fn wait_deliveries(server: &TestServer, webhook_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..400 {
        let found = deliveries(server, webhook_id).await;
        if done(&found) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deliveries never reached the state wanted: {:?}", deliveries(server, webhook_id).await);
}

/// S25: every subscribed event arrives once, signed per Standard Webhooks
/// (checked by the reference library), with its fields in `data`, and the
/// deliveries list shows each attempt.
#[tokio::test]
async fn every_event_arrives_once_signed() {
    let server = TestServer::start_with(Options { system_clock: true, ..Options::default() }).await;
    let receiver = Receiver::start(200).await;
    let (webhook_id, secret) =
        register(&server, &receiver.url(), &["auth.started", "email.sent", "auth.verified"]).await;
    let (login_id, token) = server.login_token("ada@example.com").await;
    let verified = server.verify(json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let got = receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "each event once");

    let mut kinds: Vec<String> =
        got.iter().map(|r| r.json()["type"].as_str().unwrap_or_default().to_string()).collect();
    kinds.sort();
    assert_eq!(kinds, ["auth.started", "auth.verified", "email.sent"]);
    for request in &got {
        assert!(request.verifies_with(&secret), "the reference library accepts the signature");
        assert!(!request.verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "and refuses another secret");
        let body = request.json();
        assert_eq!(request.header("webhook-id"), body["data"]["id"], "webhook-id is the event id");
        assert!(request.header("webhook-id").starts_with("evt_"));
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(body["data"]["loginId"], login_id.as_str());
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(!request.body.windows(token.len()).any(|w| w == token.as_bytes()), "no token in a delivery");
    }
    let verified_event = got.iter().map(|r| r.json()).find(|b| b["type"] == "auth.verified").unwrap_or_default();
    assert_eq!(verified_event["data"]["userId"], verified.body["user"]["id"]);
    assert_eq!(verified_event["data"]["email"], "ada@example.com");

    let listed =
        wait_deliveries(&server, &webhook_id, |d| d.len() == 3 && d.iter().all(|d| d["status"] == "sent")).await;
    for d in &listed {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["attemptLog"][0]["statusCode"], 200);
        assert!(d["attemptLog"][0]["latencyMs"].as_i64().is_some());
    }
    let scrape = server.scrape().await;
    assert!(scrape.contains("passgate_webhook_attempts_total{outcome=\"delivered\"} 3"), "{scrape}");
}

/// Failures are retried on the schedule with the same `webhook-id`; when the
/// retries are spent the delivery fails, the endpoint (failing all along)
/// is disabled and says so in an event; enabled again, a retry by hand
/// delivers it.
#[tokio::test]
async fn failures_retry_then_fail_then_retry_by_hand() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(503).await;
    let (webhook_id, _) = register(&server, &receiver.url(), &["auth.started"]).await;
    let started = server.start_login("bob@example.com", json!({})).await;
    assert_eq!(started.status, 202);
    let first = receiver.wait_for(1).await;
    let id = first[0].header("webhook-id").to_string();
    let pending = wait_deliveries(&server, &webhook_id, |d| d.first().is_some_and(|d| d["attempts"] == 1)).await;
    assert_eq!(pending[0]["status"], "pending");
    assert_eq!(pending[0]["attemptLog"][0]["statusCode"], 503);
    let next = pending[0]["nextAttemptAt"].as_str().and_then(passgate_core::Timestamp::parse_rfc3339);
    let delay = next.map(|t| t.millis() - T0.millis()).unwrap_or_default();
    assert!((4_000..=6_000).contains(&delay), "about 5 s, ±20%: {delay} ms");
    let mut scrape = String::new();
    for _ in 0..100 {
        scrape = server.scrape().await;
        if scrape.contains("passgate_outbox_depth{outbox=\"webhook\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(scrape.contains("passgate_outbox_depth{outbox=\"webhook\"} 1"), "the retry waits: {scrape}");
    assert!(scrape.contains("passgate_webhook_attempts_total{outcome=\"retrying\"} 1"), "{scrape}");
    assert!(scrape.contains("passgate_outbox_oldest_due_age_seconds{outbox=\"webhook\"} 0.000"), "not due yet");

    // Each retry comes once its time has come, and not before.
    let schedule = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
    for (n, seconds) in schedule.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(receiver.received().len(), n + 1, "no attempt before its time");
        server.clock.advance_seconds(seconds + seconds / 4 + 1);
        receiver.wait_for(n + 2).await;
    }
    let all = receiver.received();
    assert_eq!(all.len(), 8, "one attempt and seven retries");
    assert!(all.iter().all(|r| r.header("webhook-id") == id), "the same webhook-id on every attempt");
    let failed = wait_deliveries(&server, &webhook_id, |d| d.first().is_some_and(|d| d["status"] == "failed")).await;
    assert_eq!(failed[0]["attempts"], 8);
    assert_eq!(failed[0]["attemptLog"].as_array().map(Vec::len), Some(8));

    let endpoint = Reply::of(server.get(&format!("/api/v2/webhooks/{webhook_id}")).send().await).await;
    assert!(endpoint.body["disabledAt"].is_string(), "disabled after failing all along: {}", endpoint.body);
    let events = Reply::of(server.get("/api/v2/events?type=webhook.disabled").send().await).await;
    assert_eq!(events.body["events"][0]["webhookId"], webhook_id.as_str());
    assert_eq!(events.body["events"][0]["reason"], "retries_exhausted");

    // Disabled: a new event is not queued for it.
    server.start_login("cy@example.com", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deliveries(&server, &webhook_id).await.len(), 1);

    receiver.answer(200);
    let retry_path = format!("/api/v2/webhooks/{webhook_id}/deliveries/{id}/retry");
    let enabled =
        Reply::of(server.post(&format!("/api/v2/webhooks/{webhook_id}/enable"), &json!({})).send().await).await;
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    assert!(enabled.body.get("disabledAt").is_none());
    let retried = Reply::of(server.post(&retry_path, &json!({})).send().await).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    let again = Reply::of(server.post(&retry_path, &json!({})).send().await).await;
    if again.status != 202 {
        again.assert_problem(409, "webhook_delivery_pending");
    }
    receiver.wait_for(9).await;
    let sent = wait_deliveries(&server, &webhook_id, |d| d.iter().any(|d| d["status"] == "sent")).await;
    let retried = sent.iter().find(|d| d["eventId"] == id.as_str()).cloned().unwrap_or_default();
    assert_eq!(retried["attemptLog"][0]["statusCode"], 200);
    let unknown = format!("/api/v2/webhooks/{webhook_id}/deliveries/evt_0190000000007000800000000000000/retry");
    Reply::of(server.post(&unknown, &json!({})).send().await).await.assert_problem(404, "not_found");
}

/// After a rotation, deliveries carry a signature by each secret for 24 h,
/// so a receiver on either verifies them.
#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one() {
    let server = TestServer::start_with(Options { system_clock: true, ..Options::default() }).await;
    let receiver = Receiver::start(200).await;
    let (webhook_id, old) = register(&server, &receiver.url(), &["auth.started"]).await;
    let rotated =
        Reply::of(server.post(&format!("/api/v2/webhooks/{webhook_id}/rotate-secret"), &json!({})).send().await).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.str("secret");
    remember_secret(&new);
    assert!(new.starts_with("whsec_") && new != old);
    server.start_login("di@example.com", json!({})).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    assert!(got[0].verifies_with(&new) && got[0].verifies_with(&old));
    let shown = Reply::of(server.get(&format!("/api/v2/webhooks/{webhook_id}")).send().await).await;
    assert!(shown.body["previousSecretExpiresAt"].is_string());
    assert!(!shown.text.contains(&new) && !shown.text.contains(&old), "a secret is shown once");
    let listed = Reply::of(server.get("/api/v2/webhooks").send().await).await;
    assert!(!listed.text.contains("whsec_"), "nor in the list");
}

fn guarded(dns: &ScriptedDns) -> Options {
    Options {
        webhooks: Some(WebhookConfig {
            allow_private: false,
            idle_poll: Duration::from_millis(50),
            resolver: Arc::new(dns.clone()),
            ..WebhookConfig::default()
        }),
        ..Options::default()
    }
}

/// Every class of address a webhook must not reach is refused at
/// registration, by literal or by what a name resolves to; so is plain
/// http. A public name is accepted.
#[tokio::test]
async fn urls_that_reach_inside_are_refused() {
    let dns = ScriptedDns::default();
    dns.answer("private.example.test", &["10.1.2.3"]);
    dns.answer("mixed.example.test", &["93.184.216.34", "192.168.0.10"]);
    dns.answer("metadata.example.test", &["169.254.169.254"]);
    dns.answer("v6local.example.test", &["fd12::1"]);
    dns.answer("public.example.test", &["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]);
    let server = TestServer::start_with(guarded(&dns)).await;
    let refused = [
        "http://public.example.test/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.1/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[64:ff9b::a00:1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[2002:a00:1::]/hook",
        "https://2130706433/hook",
        "https://private.example.test/hook",
        "https://mixed.example.test/hook",
        "https://metadata.example.test/hook",
        "https://v6local.example.test/hook",
        "https://unknown.example.test/hook",
        "https://user:pass@public.example.test/hook",
        "ftp://public.example.test/hook",
        "not a url",
    ];
    for url in refused {
        let reply =
            Reply::of(server.post("/api/v2/webhooks", &json!({ "url": url, "events": ["auth.started"] })).send().await)
                .await;
        reply.assert_problem(400, "webhook_url_not_allowed");
    }
    register(&server, "https://public.example.test/hook", &["auth.started"]).await;
    let bad_events = [json!([]), json!(["auth.nope"])];
    for events in bad_events {
        let body = json!({ "url": "https://public.example.test/hook", "events": events });
        Reply::of(server.post("/api/v2/webhooks", &body).send().await).await.assert_problem(400, "invalid_request");
    }
}

/// DNS rebinding: a name public at registration and private at delivery is
/// refused at delivery, against the address the client would dial; the
/// receiver behind it gets nothing.
#[tokio::test]
async fn a_name_that_turns_private_is_refused_at_delivery() {
    let dns = ScriptedDns::default();
    dns.answer("hooks.example.test", &["93.184.216.34"]);
    let server = TestServer::start_with(guarded(&dns)).await;
    let receiver = Receiver::start(200).await;
    let url = format!("https://hooks.example.test:{}/hook", receiver.addr.port());
    let (webhook_id, _) = register(&server, &url, &["auth.started"]).await;
    dns.answer("hooks.example.test", &["127.0.0.1"]);
    server.start_login("eve@example.com", json!({})).await;
    let tried = wait_deliveries(&server, &webhook_id, |d| d.first().is_some_and(|d| d["attempts"] == 1)).await;
    let attempt = &tried[0]["attemptLog"][0];
    assert!(attempt.get("statusCode").is_none(), "no answer: nothing was dialled");
    assert!(attempt["error"].as_str().is_some_and(|e| e.contains("address refused")), "{attempt}");
    assert!(receiver.received().is_empty(), "the receiver behind the private address got nothing");
}

/// Endpoints belong to their project: another project's key sees, rotates,
/// lists and deletes none of them; limits and lifecycle.
#[tokio::test]
async fn endpoints_are_the_projects_own() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(200).await;
    let (webhook_id, _) = register(&server, &receiver.url(), &["user.deleted", "otp.sent"]).await;
    let (_, other_key) = server.create_project(default_settings()).await;
    for (method, path) in [
        ("GET", format!("/api/v2/webhooks/{webhook_id}")),
        ("DELETE", format!("/api/v2/webhooks/{webhook_id}")),
        ("POST", format!("/api/v2/webhooks/{webhook_id}/rotate-secret")),
        ("POST", format!("/api/v2/webhooks/{webhook_id}/enable")),
        ("GET", format!("/api/v2/webhooks/{webhook_id}/deliveries")),
    ] {
        let request = match method {
            "GET" => server.http.get(server.url(&path)),
            "DELETE" => server.http.delete(server.url(&path)),
            _ => server.http.post(server.url(&path)).json(&json!({})),
        };
        Reply::of(request.bearer_auth(&other_key).send().await).await.assert_problem(404, "not_found");
    }
    let theirs = Reply::of(server.http.get(server.url("/api/v2/webhooks")).bearer_auth(&other_key).send().await).await;
    assert_eq!(theirs.body, json!({ "webhooks": [] }));
    let ours = Reply::of(server.get("/api/v2/webhooks").send().await).await;
    assert_eq!(ours.body["webhooks"][0]["events"], json!(["user.deleted", "otp.sent"]));
    for _ in 1..20 {
        register(&server, &receiver.url(), &["auth.started"]).await;
    }
    let one_more = json!({ "url": receiver.url(), "events": ["auth.started"] });
    Reply::of(server.post("/api/v2/webhooks", &one_more).send().await)
        .await
        .assert_problem(409, "webhook_limit_reached");
    let deleted = Reply::of(
        server.http.delete(server.url(&format!("/api/v2/webhooks/{webhook_id}"))).bearer_auth(&server.key).send().await,
    )
    .await;
    assert_eq!(deleted.status, 204);
    Reply::of(server.get(&format!("/api/v2/webhooks/{webhook_id}")).send().await)
        .await
        .assert_problem(404, "not_found");
}

/// A redirect is an answer like any other non-2xx: not followed (it could
/// point anywhere), recorded, retried on the schedule. A receiver that
/// never answers is cut off by the timeout, and that is recorded too.
#[tokio::test]
async fn redirects_are_not_followed_and_silence_times_out() {
    let lease = Duration::from_secs(2);
    let options = Options {
        webhooks: Some(WebhookConfig {
            allow_private: true,
            lease,
            idle_poll: Duration::from_millis(50),
            depth_sample: Duration::from_millis(50),
            ..WebhookConfig::default()
        }),
        ..Options::default()
    };
    let server = TestServer::start_with(options).await;
    let elsewhere = Receiver::start(200).await;
    let redirecting = Receiver::start(200).await;
    redirecting.redirect(307, &elsewhere.url());
    let (redirected, _) = register(&server, &redirecting.url(), &["auth.started"]).await;
    let silent = Receiver::start(crate::support::receiver::HANG).await;
    let (timed_out, _) = register(&server, &silent.url(), &["auth.started"]).await;
    server.start_login("fay@example.com", json!({})).await;

    let tried = wait_deliveries(&server, &redirected, |d| d.first().is_some_and(|d| d["attempts"] == 1)).await;
    assert_eq!(tried[0]["attemptLog"][0]["statusCode"], 307);
    assert_eq!(tried[0]["status"], "pending", "to be retried");
    assert_eq!(redirecting.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "the redirect was not followed");

    // Each call times out at half the lease (1 s here).
    let cut = wait_deliveries(&server, &timed_out, |d| d.first().is_some_and(|d| d["attempts"] == 1)).await;
    let attempt = &cut[0]["attemptLog"][0];
    assert!(attempt.get("statusCode").is_none());
    assert_eq!(attempt["error"], "timed out", "{attempt}");
    let latency = attempt["latencyMs"].as_i64().unwrap_or_default();
    assert!((900..5_000).contains(&latency), "cut off at the timeout: {latency} ms");
}
