//! Retries and timeouts, against HTTP servers that fail on purpose (they
//! stand in for a passgate behind a restarting load balancer; the client's
//! behaviour under them is what is tested).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use passgate_client::types::{StartLoginRequest, VerifyLoginRequest};
use passgate_client::{Client, Error, SecretKey};

/// Serves `router` on a free loopback port; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn start() -> StartLoginRequest {
    StartLoginRequest {
        email: "ada@example.com".into(),
        validation_url: "http://localhost:3000/cb".into(),
        state: None,
        code_challenge: None,
        include_code: None,
        ip_address: None,
        user_agent: None,
        locale: None,
    }
}

#[tokio::test]
async fn sends_are_retried_under_one_idempotency_key_and_verifies_never() {
    // What each endpoint saw: the Idempotency-Key of every attempt.
    let starts: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let verifies: Arc<Mutex<u32>> = Arc::default();
    let (s, v) = (starts.clone(), verifies.clone());
    let router = Router::new()
        .route(
            "/api/v2/auth/start",
            post(move |headers: HeaderMap| {
                let s = s.clone();
                async move {
                    let key = headers.get("idempotency-key").and_then(|k| k.to_str().ok()).map(str::to_string);
                    let attempt = s.lock().map(|mut all| {
                        all.push(key);
                        all.len()
                    });
                    if attempt.unwrap_or_default() < 3 {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        (
                            StatusCode::ACCEPTED,
                            axum::Json(
                                serde_json::json!({"loginId": "lgn_1", "expiresAt": "2026-12-04T00:00:00.000Z"}),
                            ),
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/api/v2/auth/verify",
            post(move || {
                let v = v.clone();
                async move {
                    if let Ok(mut n) = v.lock() {
                        *n += 1;
                    }
                    StatusCode::BAD_GATEWAY
                }
            }),
        );
    let base = serve(router).await;
    let client =
        Client::builder(&base, SecretKey::new("sk_test_x")).max_retries(2).build().unwrap_or_else(|e| panic!("{e}"));

    let started = client.start_login(&start()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.login_id, "lgn_1");
    let keys = starts.lock().map(|k| k.clone()).unwrap_or_default();
    assert_eq!(keys.len(), 3, "two retries");
    assert!(keys[0].as_ref().is_some_and(|k| k.len() >= 16), "{keys:?}");
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for every attempt: {keys:?}");
    // A new call gets a new key.
    let _ = client.start_login(&start()).await;
    let keys = starts.lock().map(|k| k.clone()).unwrap_or_default();
    assert_ne!(keys[3], keys[0]);

    let verify = VerifyLoginRequest { token: Some("T".repeat(48)), ..Default::default() };
    let refused = client.verify_login(&verify).await;
    assert_eq!(refused.err().and_then(|e| e.api().map(|a| a.status())), Some(502));
    assert_eq!(verifies.lock().map(|n| *n).unwrap_or_default(), 1, "a verify is never repeated");
}

#[tokio::test]
async fn reads_are_retried_and_a_slow_answer_times_out() {
    let calls: Arc<Mutex<u32>> = Arc::default();
    let c = calls.clone();
    let router = Router::new()
        .route(
            "/api/v2/users/{id}",
            get(move || {
                let c = c.clone();
                async move {
                    let n = c.lock().map(|mut n| {
                        *n += 1;
                        *n
                    });
                    if n.unwrap_or_default() == 1 {
                        StatusCode::GATEWAY_TIMEOUT.into_response()
                    } else {
                        axum::Json(serde_json::json!({"id": "usr_1", "email": "a@example.com", "createdAt": "2026-12-04T00:00:00.000Z"}))
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/api/v2/project",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                StatusCode::OK
            }),
        );
    let base = serve(router).await;
    let client = Client::builder(&base, SecretKey::new("sk_test_x"))
        .timeout(Duration::from_millis(300))
        .max_retries(1)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let user = client.get_user("usr_1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((user.id.as_str(), calls.lock().map(|n| *n).unwrap_or_default()), ("usr_1", 2));
    assert!(matches!(client.project().await, Err(Error::Timeout)));

    // Nothing listens: a transport error, not a panic or a hang.
    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap_or_else(|e| panic!("{e}"));
    let nowhere = Client::builder(&format!("http://{closed}"), SecretKey::new("k"))
        .max_retries(0)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(nowhere.get_user("usr_1").await, Err(Error::Transport(_))));
}
