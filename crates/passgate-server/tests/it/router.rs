//! The in-process tier (`support::router`): the real router over a real
//! database, without a socket. The route list, the OpenAPI document and the
//! headers every answer carries.

use axum::http::Method;
use passgate_server::app::api_docs;
use serde_json::json;

use crate::support::router::InProcess;

/// Every route declared in the one list is served (the fallback never
/// answers it) and described in the document, and the document describes
/// nothing else.
#[tokio::test]
async fn every_declared_route_is_served_and_documented() {
    let app = InProcess::new().await;
    let document = app.call(Method::GET, "/api/v2/openapi.json", None, false).await;
    assert_eq!(document.status, 200);
    let routes = api_docs();
    assert!(routes.len() >= 7, "{routes:?}");
    let mut documented = 0;
    for route in &routes {
        let described = &document.body["paths"][&route.path];
        assert!(described.is_object(), "{} missing from the document", route.path);
        // A path parameter filled with an id that names nothing.
        let path = route.path.replace("{login_id}", "lgn_0");
        for name in route.method_names() {
            assert!(described[name].is_object(), "{name} {} missing from the document", route.path);
            documented += 1;
            let method = Method::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let body = (method == Method::POST).then(|| json!({}));
            let reply = app.call(method.clone(), &path, body.as_ref(), true).await;
            let unrouted = reply.status == 405
                || (reply.status == 404
                    && reply.body["detail"].as_str().is_some_and(|d| d.contains("no such endpoint")));
            assert!(!unrouted, "{method} {path} is not served: {}", reply.text);
        }
    }
    let described: usize = document.body["paths"]
        .as_object()
        .map(|paths| paths.values().filter_map(|p| p.as_object()).map(|p| p.len()).sum())
        .unwrap_or_default();
    assert_eq!(described, documented, "the document describes operations the route list does not declare");
    let unknown = app.call(Method::GET, "/api/v2/nope", None, true).await;
    unknown.assert_problem(404, "not_found");
}

/// The served OpenAPI document, pinned as a snapshot: any change to the
/// contract shows up as a diff to review (`cargo insta review`). The same
/// document is printed by `passgate config openapi`.
#[tokio::test]
async fn the_openapi_document_is_pinned() {
    let app = InProcess::new().await;
    let reply = app.call(Method::GET, "/api/v2/openapi.json", None, false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    insta::assert_snapshot!("openapi", reply.text);
}

/// Answers under /api/ carry JWTs and login state and are never cached;
/// the JWKS may be, briefly; every answer says nosniff and carries a
/// request id.
#[tokio::test]
async fn api_answers_are_never_cached() {
    let app = InProcess::new().await;
    let refused = json!({ "email": "nope", "validationUrl": crate::support::CALLBACK });
    let start = app.call(Method::POST, "/api/v2/auth/start", Some(&refused), true).await;
    start.assert_problem(400, "invalid_email");
    assert_eq!(start.header("cache-control"), Some("no-store"));
    let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, false).await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("cache-control"), Some("public, max-age=60"));
    let health = app.call(Method::GET, "/healthz", None, false).await;
    assert_eq!(health.header("cache-control"), None);
    for reply in [&start, &jwks, &health] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert!(reply.header("x-request-id").is_some_and(|id| id.starts_with("req_")));
    }
}

/// A login id of another project, or of none, is the same 404.
#[tokio::test]
async fn a_login_of_another_project_is_not_found() {
    let app = InProcess::new().await;
    let started = app
        .call(
            Method::POST,
            "/api/v2/auth/start",
            Some(&json!({ "email": "ada@example.com", "validationUrl": crate::support::CALLBACK })),
            true,
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let login_id = started.str("loginId");
    let own = app.call(Method::GET, &format!("/api/v2/auth/logins/{login_id}"), None, true).await;
    assert_eq!(own.body["status"], "pending");
    assert_eq!(own.body["email"]["status"], "queued");
    for other in ["lgn_0", "prj_0", "not-an-id"] {
        let reply = app.call(Method::GET, &format!("/api/v2/auth/logins/{other}"), None, true).await;
        reply.assert_problem(404, "not_found");
    }
}
