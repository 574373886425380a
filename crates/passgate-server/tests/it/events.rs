//! `GET /api/v2/events` over HTTP: pages and cursors, filters, bounds, and
//! another project's events never visible.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::*;

async fn page(server: &TestServer, key: &str, query: &str) -> Reply {
    Reply::of(server.http.get(server.url(&format!("/api/v2/events{query}"))).bearer_auth(key).send().await).await
}

/// Follows `next` from the first page; every event once, newest first.
async fn all_pages(server: &TestServer, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let joiner = if query.is_empty() { "?" } else { "&" };
        let q = match &next {
            Some(cursor) => format!("{query}{joiner}after={cursor}"),
            None => query.to_string(),
        };
        let reply = page(server, &server.key, &q).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        events.extend(reply.body["events"].as_array().cloned().unwrap_or_default());
        match reply.body["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_string()),
            None => return events,
        }
    }
}

#[tokio::test]
async fn events_page_filter_and_stay_in_their_project() {
    let server = TestServer::start().await;
    let mut users = Vec::new();
    for email in ["ada@example.com", "bob@example.com"] {
        let started = server.start_login(email, json!({ "ipAddress": "203.0.113.9", "userAgent": "Test/1.0" })).await;
        assert_eq!(started.status, 202, "{}", started.text);
        let mail = server.sink.wait_for(email).await;
        let token = mail.token().unwrap_or_default();
        remember_secret(&token);
        server.clock.advance_seconds(1);
        let verified = server.verify(json!({ "token": token })).await;
        assert_eq!(verified.status, 200, "{}", verified.text);
        users.push(verified.body["user"]["id"].as_str().unwrap_or_default().to_string());
        let wrong = server.verify(json!({ "token": "x".repeat(48) })).await;
        assert_eq!(wrong.status, 401);
    }

    let everything = all_pages(&server, "?limit=2").await;
    let ids: HashSet<&str> = everything.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), everything.len(), "no event twice across pages");
    let kinds: Vec<&str> = everything.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"auth.started") && kinds.contains(&"auth.verified") && kinds.contains(&"auth.failed"));
    let times: Vec<&str> = everything.iter().filter_map(|e| e["timestamp"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    let failed = all_pages(&server, "?type=auth.failed").await;
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e["reason"] == "token_invalid"));
    let two = all_pages(&server, "?type=auth.failed&type=auth.verified&limit=1").await;
    let comma = all_pages(&server, "?type=auth.failed,auth.verified").await;
    assert_eq!(two.len(), 4);
    assert_eq!(two, comma, "repeated and comma-separated types mean the same");

    let adas = all_pages(&server, &format!("?userId={}", users[0])).await;
    assert!(!adas.is_empty() && adas.iter().all(|e| e["userId"] == users[0].as_str()));
    assert!(adas.iter().any(|e| e["type"] == "auth.verified"));
    let started = all_pages(&server, "?type=auth.started").await;
    assert_eq!(started.len(), 2);
    assert!(
        started.iter().all(|e| e["ipAddress"] == "203.0.113.9" && e["userAgent"] == "Test/1.0"),
        "what the app passed"
    );
    assert!(started.iter().all(|e| e.get("userId").is_none() || e["userId"].is_string()));
    assert!(all_pages(&server, "?userId=usr_nobody").await.is_empty());
    assert!(all_pages(&server, "?userId=not-an-id").await.is_empty());

    let (_, other_key) = server.create_project(default_settings()).await;
    let theirs = page(&server, &other_key, "").await;
    assert_eq!(theirs.body["events"], json!([]), "another project's key sees none of them");
    let by_user = page(&server, &other_key, &format!("?userId={}", users[0])).await;
    assert_eq!(by_user.body["events"], json!([]));

    for bad in ["?limit=0", "?limit=201", "?limit=x", "?type=auth.nope", "?after=garbage", "?colour=red"] {
        page(&server, &server.key, bad).await.assert_problem(400, "invalid_request");
    }
    let max = page(&server, &server.key, "?limit=200").await;
    assert_eq!(max.status, 200);
    assert!(max.body.get("next").is_none(), "a short page is the last");
    page(&server, "sk_live_nope", "").await.assert_problem(401, "unauthorized");
}

/// Pages read while logins keep writing events: nothing twice, nothing that
/// existed when the reading began is missed.
#[tokio::test]
async fn pages_hold_under_concurrent_logins() {
    let server = TestServer::start().await;
    for i in 0..12 {
        assert_eq!(server.start_login(&format!("u{i}@example.com"), json!({})).await.status, 202);
    }
    let before: HashSet<String> =
        all_pages(&server, "").await.iter().filter_map(|e| e["id"].as_str().map(str::to_string)).collect();
    let writer = {
        let (http, url, key) = (server.http.clone(), server.url("/api/v2/auth/start"), server.key.clone());
        tokio::spawn(async move {
            for i in 0..12 {
                let body = json!({ "email": format!("late{i}@example.com"), "validationUrl": CALLBACK });
                let _ = http.post(&url).bearer_auth(&key).json(&body).send().await;
            }
        })
    };
    let seen = all_pages(&server, "?limit=3").await;
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = seen.iter().filter_map(|e| e["id"].as_str().map(str::to_string)).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice");
    assert!(before.is_subset(&unique), "every event that existed is seen");
}
