//! The magic-link login, end to end over HTTP and SMTP.

use base64::Engine;
use passgate_core::Clock;
use passgate_core::jwt::verify_signature;
use serde_json::{Value, json};

use crate::support::*;

async fn jwks(server: &TestServer) -> Vec<(String, [u8; 32])> {
    let reply = Reply::of(server.http.get(server.url("/.well-known/jwks.json")).send().await).await;
    assert_eq!(reply.status, 200);
    reply.body["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys"))
        .iter()
        .map(|k| {
            assert_eq!(
                (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
                (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
            );
            assert!(k.get("d").is_none(), "the JWKS must hold public keys only");
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap_or_default())
                .unwrap_or_default();
            (k["kid"].as_str().unwrap_or_default().to_string(), x.try_into().unwrap_or([0; 32]))
        })
        .collect()
}

#[tokio::test]
async fn magic_link_end_to_end_over_smtp() {
    let server = TestServer::start().await;
    let started = server.start_login("ada@example.com", json!({ "state": "s-123" })).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let login_id = started.str("loginId");
    assert!(login_id.starts_with("lgn_"));
    assert_eq!(started.str("expiresAt"), "2026-11-21T00:15:00.000Z");
    assert_eq!(started.body.as_object().map(|o| o.len()), Some(2), "only loginId and expiresAt: {}", started.text);

    let mail = server.sink.wait_for("ada@example.com").await;
    assert_eq!(mail.header("Subject"), Some("Sign in to Acme App"));
    assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
    assert_eq!(mail.header("X-Auto-Response-Suppress"), Some("All"));
    assert!(mail.header("From").is_some_and(|f| f.contains("no-reply@acme.example")));
    assert_eq!(mail.from, "no-reply@acme.example", "the envelope sender");
    let link = mail.link().unwrap_or_default();
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    assert_eq!(link, format!("{CALLBACK}?token={token}"));
    assert_eq!(token.len(), 48);
    assert!(mail.text.contains("Acme App") && mail.html.contains("Acme App"));
    assert!(mail.html.contains(&format!("href=\"{CALLBACK}?token={token}\"")), "the HTML part links too");

    let status = Reply::of(server.get(&format!("/api/v2/auth/logins/{login_id}")).send().await).await;
    assert_eq!(status.body["status"], "pending");

    let verified = server.verify(json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let user = &verified.body["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["isNewUser"], true);
    assert!(user["id"].as_str().is_some_and(|id| id.starts_with("usr_")));
    assert_eq!(verified.body["state"], "s-123");

    let jwt = verified.str("jwt");
    let claims = verify_signature(&jwt, &jwks(&server).await).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["iss"], server.base);
    assert_eq!(claims["aud"], server.project_id.as_str());
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["amr"], json!(["email_link"]));
    assert_eq!(claims["iat"].as_i64(), Some(T0.seconds()));
    assert_eq!(claims["exp"].as_i64(), Some(T0.seconds() + 300));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    let again = server.verify(json!({ "token": token })).await;
    again.assert_problem(401, "token_used");
    assert_eq!(again.body["usedAt"], "2026-11-21T00:00:00.000Z");

    let status = server.wait_email_status(&login_id, "sent").await;
    assert_eq!(status["status"], "verified");
    assert_eq!(status["verifiedAt"], "2026-11-21T00:00:00.000Z");
    assert_eq!(status["email"], json!({ "status": "sent", "attempts": 1 }));
}

#[tokio::test]
async fn the_email_is_canonical_everywhere() {
    let server = TestServer::start().await;
    let reply = server.start_login("  Ada@Bücher.Example ", json!({})).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let mail = server.sink.wait_for("ada@xn--bcher-kva.example").await;
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    let verified = server.verify(json!({ "token": token })).await;
    assert_eq!(verified.body["user"]["email"], "ada@xn--bcher-kva.example");
}

#[tokio::test]
async fn a_returning_user_keeps_their_id() {
    let server = TestServer::start().await;
    let (_, first) = server.login_token("ada@example.com").await;
    let first = server.verify(json!({ "token": first })).await;
    let (_, second) = server.login_token("ADA@example.com").await;
    let second = server.verify(json!({ "token": second })).await;
    assert_eq!(second.body["user"]["isNewUser"], false);
    assert_eq!(second.body["user"]["id"], first.body["user"]["id"]);
    assert_eq!(second.body["user"]["createdAt"], first.body["user"]["createdAt"]);
}

#[tokio::test]
async fn the_fallback_code_signs_in_once_and_three_wrong_codes_burn_the_login() {
    let server = TestServer::start().await;
    let started = server.start_login("ada@example.com", json!({ "includeCode": true })).await;
    let login_id = started.str("loginId");
    let mail = server.sink.wait_for("ada@example.com").await;
    let code = mail.code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    let token = mail.token().unwrap_or_default();
    remember_secret(&code);
    remember_secret(&token);
    assert!(mail.html.contains(&code), "the code stands in the HTML part too");
    let verified = server.verify(json!({ "loginId": login_id, "code": code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let claims = verify_signature(&verified.str("jwt"), &jwks(&server).await).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["amr"], json!(["email_otp"]));
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_used");
    server.verify(json!({ "loginId": login_id, "code": code })).await.assert_problem(401, "token_used");

    let started = server.start_login("bob@example.com", json!({ "includeCode": true })).await;
    let login_id = started.str("loginId");
    let mail = server.sink.wait_for("bob@example.com").await;
    let (code, token) = (mail.code().unwrap_or_default(), mail.token().unwrap_or_default());
    remember_secret(&code);
    remember_secret(&token);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        server.verify(json!({ "loginId": login_id, "code": wrong })).await.assert_problem(401, "code_invalid");
    }
    server.verify(json!({ "loginId": login_id, "code": code })).await.assert_problem(401, "token_burned");
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_burned");
    let status = Reply::of(server.get(&format!("/api/v2/auth/logins/{login_id}")).send().await).await;
    assert_eq!(status.body["status"], "burned");

    // A login without a code refuses codes.
    let (login_id, token) = server.login_token("carol@example.com").await;
    server.verify(json!({ "loginId": login_id, "code": "123456" })).await.assert_problem(401, "code_invalid");
    assert_eq!(server.verify(json!({ "token": token })).await.status, 200);
}

/// SECURITY S12 for link codes: wrong codes count per address across its
/// logins, so new logins do not bring new guesses. Ten in a row block the
/// address's codes (429 with Retry-After), even the right one; and a wrong
/// code never tells whether a login is used.
#[tokio::test]
async fn wrong_codes_are_budgeted_per_address_across_logins() {
    let server = TestServer::start().await;
    let email = "guessed@example.com";
    let mut logins = Vec::new();
    for i in 0..4 {
        let login_id = server.start_login(email, json!({ "includeCode": true })).await.str("loginId");
        let mail = server.sink.wait_for_count(email, i + 1).await.pop().unwrap_or_else(|| panic!("no mail"));
        let code = mail.code().unwrap_or_default();
        remember_secret(&code);
        remember_secret(&mail.token().unwrap_or_default());
        logins.push((login_id, code));
    }
    let wrong = |code: &str| if code == "000000" { "111111".to_string() } else { "000000".to_string() };
    // 3 + 3 + 3 + 1: the tenth wrong code in a row, over four logins.
    for (i, (login_id, code)) in logins.iter().enumerate() {
        for _ in 0..if i < 3 { 3 } else { 1 } {
            let reply = server.verify(json!({ "loginId": login_id, "code": wrong(code) })).await;
            reply.assert_problem(401, "code_invalid");
        }
    }
    let (last_id, last_code) = &logins[3];
    let blocked = server.verify(json!({ "loginId": last_id, "code": last_code })).await;
    blocked.assert_problem(429, "rate_limited");
    assert_eq!(blocked.header("retry-after"), Some("30"));
    server.clock.advance_seconds(30);
    let verified = server.verify(json!({ "loginId": last_id, "code": last_code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    // Used now: a wrong code learns nothing of it; the right one does.
    server.verify(json!({ "loginId": last_id, "code": wrong(last_code) })).await.assert_problem(401, "code_invalid");
    server.verify(json!({ "loginId": last_id, "code": last_code })).await.assert_problem(401, "token_used");
}

#[tokio::test]
async fn pkce_binds_the_link_to_the_browser_that_started_it() {
    let server = TestServer::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    server.start_login("ada@example.com", json!({ "codeChallenge": challenge })).await;
    let token = server.sink.wait_for("ada@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    // A scanner (no verifier) and an interceptor (wrong verifier) fail without consuming it.
    server.verify(json!({ "token": token })).await.assert_problem(401, "code_verifier_mismatch");
    let wrong = "x".repeat(43);
    server.verify(json!({ "token": token, "codeVerifier": wrong })).await.assert_problem(401, "code_verifier_mismatch");
    let ok = server.verify(json!({ "token": token, "codeVerifier": verifier })).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // Five mismatches burn it.
    server.start_login("bob@example.com", json!({ "codeChallenge": challenge })).await;
    let token = server.sink.wait_for("bob@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    for _ in 0..5 {
        server.verify(json!({ "token": token })).await.assert_problem(401, "code_verifier_mismatch");
    }
    server.verify(json!({ "token": token, "codeVerifier": verifier })).await.assert_problem(401, "token_burned");

    // Only S256-shaped challenges are accepted.
    let plain = server.start_login("carol@example.com", json!({ "codeChallenge": "plain-verifier" })).await;
    plain.assert_problem(400, "invalid_request");
}

/// SECURITY S6: 50 concurrent verifies of one token, exactly one 200.
#[tokio::test]
async fn fifty_concurrent_verifies_of_one_token_succeed_once() {
    let server = TestServer::start().await;
    let (_, token) = server.login_token("race@example.com").await;
    let attempts = (0..50).map(|_| {
        let request = server.post("/api/v2/auth/verify", &json!({ "token": token }));
        tokio::spawn(async move { Reply::of(request.send().await).await })
    });
    let replies = futures::future::join_all(attempts).await;
    let mut ok = 0;
    for reply in replies {
        let reply = reply.unwrap_or_else(|e| panic!("{e}"));
        match reply.status {
            200 => ok += 1,
            _ => reply.assert_problem(401, "token_used"),
        }
    }
    assert_eq!(ok, 1);
}

/// SECURITY S7: just before the TTL works, at the TTL fails (manual clock, no sleeping).
#[tokio::test]
async fn tokens_work_until_their_expiry_and_not_after() {
    let server = TestServer::start().await;
    let (_, early) = server.login_token("a@example.com").await;
    let (late_id, late) = server.login_token("b@example.com").await;
    server.clock.set(T0.plus_seconds(900).plus_millis(-1));
    assert_eq!(server.verify(json!({ "token": early })).await.status, 200);
    server.clock.set(T0.plus_seconds(900));
    let expired = server.verify(json!({ "token": late })).await;
    expired.assert_problem(401, "token_expired");
    assert_eq!(expired.body["expiredAt"], "2026-11-21T00:15:00.000Z");
    let status = Reply::of(server.get(&format!("/api/v2/auth/logins/{late_id}")).send().await).await;
    assert_eq!(status.body["status"], "expired");
}

#[tokio::test]
async fn the_link_ttl_is_a_project_setting() {
    let mut settings = default_settings();
    settings.link_ttl_seconds = 600;
    let server = TestServer::start_with(Options { settings: Some(settings), ..Options::default() }).await;
    let reply = server.start_login("a@example.com", json!({})).await;
    assert_eq!(reply.str("expiresAt"), "2026-11-21T00:10:00.000Z");
    let mail = server.sink.wait_for("a@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    assert!(mail.text.contains("expires in 10 minutes"), "{}", mail.text);
}

#[tokio::test]
async fn the_validation_url_keeps_its_query_and_paths_under_the_prefix_work() {
    let server = TestServer::start().await;
    let url = format!("{CALLBACK}/deeper?next=%2Fhome");
    let reply = server.start_login("a@example.com", json!({ "validationUrl": url })).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let mail = server.sink.wait_for("a@example.com").await;
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    assert_eq!(mail.link().unwrap_or_default(), format!("{url}&token={token}"));
}

#[tokio::test]
async fn get_login_is_scoped_and_checks_the_id() {
    let server = TestServer::start().await;
    let reply = Reply::of(server.get("/api/v2/auth/logins/lgn_doesnotexist").send().await).await;
    reply.assert_problem(404, "not_found");
    let reply = Reply::of(server.get("/api/v2/auth/logins/usr_wrongkind").send().await).await;
    reply.assert_problem(404, "not_found");
    let reply = Reply::of(server.get("/api/v2/auth/logins/%FF%FE").send().await).await;
    reply.assert_problem(404, "not_found");
    let _: Value = reply.body;
}

/// `signing-key rotate`: new JWTs carry the new `kid`, and a JWT signed
/// before the rotation still verifies against the published JWKS.
#[tokio::test]
async fn a_rotated_signing_key_stays_published_until_its_tokens_expire() {
    let server = TestServer::start().await;
    let (_, token) = server.login_token("ada@example.com").await;
    let before = server.verify(json!({ "token": token })).await.str("jwt");
    // What `passgate signing-key rotate` does (tested in process.rs), at the server's clock.
    let secret = passgate_core::secret::ServerSecret::from_base64(SECRET_B64, None).unwrap_or_else(|e| panic!("{e}"));
    let record = passgate_server::keys::new_record(&secret, server.clock.now());
    server.store.rotate_signing_key(record, server.clock.now()).await.unwrap_or_else(|e| panic!("{e}"));
    let published = jwks(&server).await;
    assert_eq!(published.len(), 2, "current and previous key");
    let (_, token) = server.login_token("ada@example.com").await;
    let after = server.verify(json!({ "token": token })).await.str("jwt");
    let kid = |jwt: &str| {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap_or_default())
            .unwrap_or_default();
        serde_json::from_slice::<Value>(&header).unwrap_or_default()["kid"].as_str().unwrap_or_default().to_string()
    };
    assert_ne!(kid(&before), kid(&after), "new tokens use the new key");
    for jwt in [&before, &after] {
        verify_signature(jwt, &published).unwrap_or_else(|e| panic!("{e}"));
    }
    // An hour after the rotation, only the new key is left.
    server.clock.advance_seconds(3601);
    let later = jwks(&server).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].0, kid(&after));
}
