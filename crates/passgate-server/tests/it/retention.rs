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
