//! The retention sweeper in a running server: a used link answers
//! `token_used` (with `usedAt`) for as long as it is kept, then
//! `token_invalid`; what went is counted in the metrics.

use std::time::Duration;

use passgate_server::sweeper::SweepConfig;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_used_link_answers_token_used_until_it_is_swept() {
    let retention = SweepConfig {
        retain_logins: Duration::from_secs(3600),
        interval: Duration::from_millis(50),
        ..SweepConfig::default()
    };
    let server = TestServer::start_with(Options { retention: Some(retention), ..Options::default() }).await;
    let (login_id, token) = server.login_token("ada@example.com").await;
    assert_eq!(server.verify(json!({ "token": token })).await.status, 200);

    // Past the link's expiry, inside the grace period: still token_used.
    server.clock.advance_seconds(15 * 60 + 3000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = server.verify(json!({ "token": token })).await;
    again.assert_problem(401, "token_used");
    assert_eq!(again.body["usedAt"], "2026-11-21T00:00:00.000Z");
    assert_eq!(server.login_state(&login_id).await["status"], "verified");

    // Past the grace period: swept, and the token names nothing.
    server.clock.advance_seconds(700);
    let mut state = server.login_state(&login_id).await;
    for _ in 0..200 {
        if state["code"] == "not_found" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        state = server.login_state(&login_id).await;
    }
    assert_eq!(state["code"], "not_found", "{state}");
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_invalid");
    let scrape = server.scrape().await;
    assert!(scrape.contains("passgate_swept_rows_total{kind=\"logins\"} 1"), "{scrape}");
    assert!(scrape.contains("passgate_sweep_lag_seconds"), "{scrape}");
}

/// Backlogs of several kinds, each more than one batch, all go: the kinds
/// are swept side by side, each batch by batch until it is done, and the
/// counts in the metrics are exactly what was past its horizon.
#[tokio::test]
async fn backlogs_of_every_kind_are_cleared_batch_by_batch() {
    let retention = SweepConfig {
        retain_logins: Duration::from_secs(3600),
        retain_emails: Duration::from_secs(3600),
        interval: Duration::from_millis(50),
        batch: 2,
    };
    let server = TestServer::start_with(Options { retention: Some(retention), ..Options::default() }).await;
    let mut logins = Vec::new();
    for i in 0..5 {
        let (login_id, token) = server.login_token(&format!("user{i}@example.com")).await;
        assert_eq!(server.verify(json!({ "token": token })).await.status, 200);
        server.wait_email_status(&login_id, "sent").await;
        logins.push(login_id);
    }
    let events = Reply::of(server.get("/api/v2/events?limit=100").send().await).await.body;
    let event_count = events["events"].as_array().map_or(0, Vec::len);
    assert!(event_count >= 10, "{events}");

    // Past the events' 90 days and everything else's horizon.
    server.clock.advance_seconds(91 * 24 * 3600);
    let expected: Vec<String> = [("logins", 5), ("emails", 5), ("events", event_count)]
        .iter()
        .map(|(kind, count)| format!("passgate_swept_rows_total{{kind=\"{kind}\"}} {count}\n"))
        .collect();
    let mut scrape = server.scrape().await;
    for _ in 0..200 {
        if expected.iter().all(|line| scrape.contains(line.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        scrape = server.scrape().await;
    }
    for line in &expected {
        assert!(scrape.contains(line.as_str()), "{line} missing from\n{scrape}");
    }
    for login_id in &logins {
        assert_eq!(server.login_state(login_id).await["code"], "not_found");
    }
    let after = Reply::of(server.get("/api/v2/events?limit=100").send().await).await.body;
    assert_eq!(after["events"].as_array().map(Vec::len), Some(0), "{after}");
}
