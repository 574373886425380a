//! Email one-time codes, session credentials and stamped session requests
//! over HTTP, against the real router, outbox and SMTP sink, on either
//! backend — with Turnkey's own client code as the oracle: its enclave
//! client opens the credentials we seal, its stamper signs the requests we
//! must accept.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passgate_store::EventKind;
use serde_json::{Value, json};
use turnkey_api_key_stamper::{Stamp, TurnkeyP256ApiKey};
use turnkey_enclave_encrypt::AuthenticationClient;

use crate::support::*;

async fn send(request: reqwest::RequestBuilder) -> Reply {
    Reply::of(request.send().await).await
}

async fn send_otp(server: &TestServer, body: Value) -> Reply {
    send(server.post("/api/v2/otp/send", &body)).await
}

async fn verify_otp(server: &TestServer, body: Value) -> Reply {
    send(server.post("/api/v2/otp/verify", &body)).await
}

/// Sends a code to `email` and reads it from the email: (otpId, code).
async fn code_for(server: &TestServer, email: &str, extra: Value) -> (String, String) {
    let mut body = json!({ "email": email });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let before = server.sink.mails_to(email).len();
    let sent = send_otp(server, body).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let mail = server.sink.wait_for_count(email, before + 1).await.pop().unwrap_or_else(|| panic!("no mail"));
    let code = mail.one_time_code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    remember_secret(&code);
    (sent.str("otpId"), code)
}

fn jwt_claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap_or_default();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).unwrap_or(Value::Null)
}

/// A code that is surely wrong: the right one with its last digit changed.
fn wrong(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == '1' { '2' } else { '1' };
    }
    chars.into_iter().collect()
}

/// The whole flow: the email (the code as one run in both parts, the app
/// name, the expiry, the "ignore it" line), verify once with a JWT whose
/// `amr` is `email_otp`, events, and no code in any log or in the database.
#[tokio::test]
async fn a_code_goes_from_email_to_jwt_once() {
    let server = TestServer::start().await;
    let sent = send_otp(&server, json!({ "email": "Ada@Example.com", "ipAddress": "203.0.113.9" })).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let otp_id = sent.str("otpId");
    assert!(otp_id.starts_with("otp_"), "{otp_id}");
    assert!(sent.body["expiresAt"].as_str().is_some());

    let mail = server.sink.wait_for("ada@example.com").await;
    let code = mail.one_time_code().unwrap_or_else(|| panic!("no code in {}", mail.text));
    remember_secret(&code);
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(mail.header("subject"), Some("Your sign-in code for Acme App"));
    assert!(mail.text.contains("Acme App") && mail.text.contains("expires in 5 minutes"), "{}", mail.text);
    assert!(mail.text.contains("If you did not ask to sign in"), "{}", mail.text);
    assert!(mail.html.contains(&format!(">{code}<")), "the code is one unbroken run in the HTML part");

    let dump = server.db.logical_dump();
    assert!(!reveals(&dump, &code), "the code is stored only keyed-hashed");

    let verified = verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["user"]["email"], "ada@example.com");
    assert_eq!(verified.body["user"]["isNewUser"], true);
    assert!(verified.body.get("authSession").is_none(), "no target key, no session");
    let claims = jwt_claims(verified.body["jwt"].as_str().unwrap_or_default());
    assert_eq!(claims["amr"], json!(["email_otp"]));
    assert_eq!(claims["aud"], server.project_id.as_str());

    verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.assert_problem(401, "otp_used");
    assert_eq!(server.store.count_events(&server.project_id, EventKind::OtpSent).await, 1);
    assert_eq!(server.store.count_events(&server.project_id, EventKind::OtpVerified).await, 1);
    assert_eq!(server.store.count_events(&server.project_id, EventKind::OtpFailed).await, 1);
    let events = server.store.list_events(&server.project_id, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!reveals(&format!("{events:?}"), &code));
}

/// Alphanumeric codes use Crockford's alphabet and are read the Crockford
/// way: any case, hyphens and spaces, O for 0, I and L for 1.
#[tokio::test]
async fn alphanumeric_codes_are_read_the_crockford_way() {
    let server = TestServer::start().await;
    let (otp_id, code) =
        code_for(&server, "grace@example.com", json!({ "otpLength": 9, "alphanumeric": true, "expiresIn": 60 })).await;
    assert_eq!(code.len(), 9);
    assert!(code.bytes().all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)), "{code}");
    let typed: String = code
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let c = match c {
                '0' => 'o',
                '1' => 'l',
                c => c.to_ascii_lowercase(),
            };
            if i == 3 { vec!['-', c] } else { vec![c] }
        })
        .collect();
    let verified = verify_otp(&server, json!({ "otpId": otp_id, "code": format!(" {typed} ") })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
}

/// Bad input is refused before anything is stored or sent.
#[tokio::test]
async fn bad_input_is_refused_before_anything_is_sent() {
    let server = TestServer::start().await;
    let cases = [
        json!({ "email": "a@example.com", "otpLength": 5 }),
        json!({ "email": "a@example.com", "otpLength": 10 }),
        json!({ "email": "a@example.com", "expiresIn": 59 }),
        json!({ "email": "a@example.com", "expiresIn": 601 }),
        json!({ "email": "a@example.com", "appName": "x\r\nBcc: evil@example.com" }),
        json!({ "email": "a@example.com", "targetPublicKey": "04abcd" }),
        // 65 bytes, but not a point on the curve.
        json!({ "email": "a@example.com", "targetPublicKey": format!("04{}", "11".repeat(64)) }),
        json!({ "email": "a@example.com", "targetPublicKey": "not hex" }),
        json!({ "email": "a@example.com", "unknown": 1 }),
    ];
    for body in cases {
        send_otp(&server, body.clone()).await.assert_problem(400, "invalid_request");
    }
    send_otp(&server, json!({ "email": "not an address" })).await.assert_problem(400, "invalid_email");
    assert!(server.sink.mails_to("a@example.com").is_empty());
    assert_eq!(server.store.count_events(&server.project_id, EventKind::OtpSent).await, 0);

    let (otp_id, code) = code_for(&server, "b@example.com", json!({})).await;
    for body in [
        json!({ "otpId": otp_id, "code": "12345" }),
        json!({ "otpId": otp_id, "code": code, "sessionExpiresIn": 59 }),
        json!({ "otpId": otp_id, "code": code, "sessionExpiresIn": 86_401 }),
        json!({ "otpId": otp_id, "code": code, "targetPublicKey": "02" }),
    ] {
        verify_otp(&server, body).await.assert_problem(400, "invalid_request");
    }
    verify_otp(&server, json!({ "otpId": "otp_nope", "code": code })).await.assert_problem(401, "otp_invalid");
    // None of that counted: the code still works.
    let verified = verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
}

/// A code belongs to its otpId and its project (S10).
#[tokio::test]
async fn a_code_belongs_to_its_otp_id_and_project() {
    let server = TestServer::start().await;
    let (first, first_code) = code_for(&server, "ada@example.com", json!({})).await;
    let (second, _) = code_for(&server, "ada@example.com", json!({})).await;
    verify_otp(&server, json!({ "otpId": second, "code": first_code })).await.assert_problem(401, "otp_invalid");
    let (_, other_key) = server.create_project(default_settings()).await;
    let elsewhere =
        send(server.post_as(&other_key, "/api/v2/otp/verify", &json!({ "otpId": first, "code": first_code }))).await;
    elsewhere.assert_problem(401, "otp_invalid");
    let verified = verify_otp(&server, json!({ "otpId": first, "code": first_code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
}

/// Three wrong codes lock the otpId, and then the right one is refused too
/// (S11); a code expires exactly (S7, with the manual clock).
#[tokio::test]
async fn three_wrong_codes_lock_the_code_and_codes_expire_exactly() {
    let server = TestServer::start().await;
    let (otp_id, code) = code_for(&server, "ada@example.com", json!({})).await;
    for _ in 0..3 {
        verify_otp(&server, json!({ "otpId": otp_id, "code": wrong(&code) })).await.assert_problem(401, "otp_invalid");
    }
    verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.assert_problem(401, "otp_locked");

    let (otp_id, code) = code_for(&server, "grace@example.com", json!({ "expiresIn": 60 })).await;
    server.clock.advance_millis(60_000);
    verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.assert_problem(401, "otp_expired");
    let (otp_id, code) = code_for(&server, "grace@example.com", json!({ "expiresIn": 60 })).await;
    server.clock.advance_millis(59_999);
    assert_eq!(verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.status, 200);
}

/// 3 sends per address per 3 minutes and 3 live codes per address, each a
/// 429 with Retry-After; another address is not affected (S13).
#[tokio::test]
async fn sends_are_limited_per_address() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        code_for(&server, "ada@example.com", json!({ "expiresIn": 600 })).await;
    }
    let limited = send_otp(&server, json!({ "email": "ada@example.com" })).await;
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("180"));
    code_for(&server, "grace@example.com", json!({})).await;

    // Past the window, the three codes are still live: that limit answers
    // until the first of them expires.
    server.clock.advance_seconds(181);
    let live = send_otp(&server, json!({ "email": "ada@example.com" })).await;
    live.assert_problem(429, "rate_limited");
    assert_eq!(live.header("retry-after"), Some("419"));
    assert!(live.body["detail"].as_str().is_some_and(|d| d.contains("unused codes")), "{}", live.text);
    server.clock.advance_seconds(419);
    code_for(&server, "ada@example.com", json!({})).await;
    assert_eq!(server.store.count_events(&server.project_id, EventKind::RateLimited).await, 2);
}

/// The sends per address are the project's setting (`--otp-sends-per-email`)
/// over the fixed 3-minute window.
#[tokio::test]
async fn sends_per_address_are_the_projects_setting() {
    let mut settings = default_settings();
    settings.otp_sends_per_email = 1;
    let server = TestServer::start_with(Options { settings: Some(settings), ..Options::default() }).await;
    code_for(&server, "ada@example.com", json!({})).await;
    let limited = send_otp(&server, json!({ "email": "ada@example.com" })).await;
    limited.assert_problem(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("180"));
    code_for(&server, "grace@example.com", json!({})).await;
    server.clock.advance_seconds(181);
    code_for(&server, "ada@example.com", json!({})).await;
    assert_eq!(server.store.count_events(&server.project_id, EventKind::RateLimited).await, 1);
}

/// S12: wrong codes count per address across its codes; a new code does
/// not reset them; 10 in a row block the address (verify says otp_locked,
/// send answers 429 with Retry-After) for 30 s, doubling; a success resets.
#[tokio::test]
async fn ten_wrong_codes_in_a_row_block_the_address() {
    let server = TestServer::start().await;
    let email = "ada@example.com";
    let mut failures = 0;
    while failures < 10 {
        if failures > 0 {
            // Stay clear of the send limits: this is about the failure budget.
            server.clock.advance_seconds(181);
        }
        let (otp_id, code) = code_for(&server, email, json!({})).await;
        for _ in 0..3 {
            if failures == 10 {
                break;
            }
            verify_otp(&server, json!({ "otpId": otp_id, "code": wrong(&code) }))
                .await
                .assert_problem(401, "otp_invalid");
            failures += 1;
        }
    }
    let blocked_send = send_otp(&server, json!({ "email": email })).await;
    blocked_send.assert_problem(429, "rate_limited");
    let retry: i64 = blocked_send.header("retry-after").and_then(|r| r.parse().ok()).unwrap_or_default();
    assert!((1..=30).contains(&retry), "{retry}");
    server.clock.advance_seconds(retry);
    let (otp_id, code) = code_for(&server, email, json!({})).await;
    // One more wrong code: blocked again, for twice as long.
    verify_otp(&server, json!({ "otpId": otp_id, "code": wrong(&code) })).await.assert_problem(401, "otp_invalid");
    verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.assert_problem(401, "otp_locked");
    let again = send_otp(&server, json!({ "email": email })).await;
    assert_eq!(again.header("retry-after"), Some("60"), "{}", again.text);
    server.clock.advance_seconds(60);
    // The right code works once the block has passed, and resets the count.
    assert_eq!(verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.status, 200);
    server.clock.advance_seconds(181);
    let (otp_id, code) = code_for(&server, email, json!({})).await;
    verify_otp(&server, json!({ "otpId": otp_id, "code": wrong(&code) })).await.assert_problem(401, "otp_invalid");
    assert_eq!(
        verify_otp(&server, json!({ "otpId": otp_id, "code": code })).await.status,
        200,
        "one wrong code no longer blocks"
    );
}

/// Repeats with the same Idempotency-Key send nothing more.
#[tokio::test]
async fn idempotent_sends_send_once() {
    let mut server = TestServer::start().await;
    let body = json!({ "email": "ada@example.com" });
    let first = send(server.post("/api/v2/otp/send", &body).header("Idempotency-Key", "otp-1")).await;
    let second = send(server.post("/api/v2/otp/send", &body).header("Idempotency-Key", "otp-1")).await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.body, second.body);
    let other = json!({ "email": "grace@example.com" });
    send(server.post("/api/v2/otp/send", &other).header("Idempotency-Key", "otp-1"))
        .await
        .assert_problem(409, "idempotency_key_reused");
    server.sink.wait_for("ada@example.com").await;
    server.shutdown().await;
    assert_eq!(server.sink.mails_to("ada@example.com").len(), 1);
}

/// Fifty concurrent verifies of one right code: exactly one succeeds (S6).
#[tokio::test]
async fn fifty_concurrent_verifies_one_winner() {
    let server = TestServer::start().await;
    let (otp_id, code) = code_for(&server, "ada@example.com", json!({})).await;
    let tries = (0..50).map(|_| verify_otp(&server, json!({ "otpId": otp_id, "code": code })));
    let replies = futures::future::join_all(tries).await;
    let won = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(won, 1, "{:?}", replies.iter().map(|r| r.code().to_string()).collect::<Vec<_>>());
    assert!(replies.iter().filter(|r| r.status != 200).all(|r| r.code() == "otp_used"));
}

/// A browser's key pair, made by Turnkey's own enclave client: it opens
/// our bundles exactly as Turnkey's SDK does.
struct Browser {
    client: AuthenticationClient,
    target: String,
}

impl Browser {
    fn new() -> Self {
        let client = AuthenticationClient::new();
        let target = client.target_public_key().unwrap_or_else(|e| panic!("{e:?}"));
        Self { client, target }
    }

    /// Opens the bundle: the session's private key, as a stamper.
    fn open(mut self, bundle: &str) -> TurnkeyP256ApiKey {
        let private = self.client.decrypt(bundle).unwrap_or_else(|e| panic!("Turnkey cannot open it: {e:?}"));
        assert_eq!(private.len(), 32);
        TurnkeyP256ApiKey::from_bytes(private, None::<Vec<u8>>).unwrap_or_else(|e| panic!("{e:?}"))
    }
}

/// A stamped POST as Turnkey's stamper makes it.
async fn stamped(server: &TestServer, key: &TurnkeyP256ApiKey, path: &str, body: &str) -> Reply {
    let stamp = key.stamp(body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    send(
        server
            .http
            .post(server.url(path))
            .header("content-type", "application/json")
            .header(stamp.name.as_str(), stamp.value.as_str())
            .body(body.to_string()),
    )
    .await
}

fn body_at(action: &str, at_ms: i64) -> String {
    json!({ "action": action, "timestampMs": at_ms.to_string() }).to_string()
}

/// The second product's flow: a target key at send, the credential sealed
/// to it (opened by Turnkey's client), and the browser signing its own
/// requests with the session key (Turnkey's stamper) — whoami, activity,
/// revoke — with every refusal the contract names.
#[tokio::test]
async fn a_session_credential_opens_with_turnkey_and_signs_requests() {
    let server = TestServer::start().await;
    let browser = Browser::new();
    let (otp_id, code) = code_for(&server, "ada@example.com", json!({ "targetPublicKey": browser.target })).await;
    let verified = verify_otp(&server, json!({ "otpId": otp_id, "code": code, "sessionExpiresIn": 3600 })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let session = &verified.body["authSession"];
    let session_id = session["sessionId"].as_str().unwrap_or_default().to_string();
    assert!(session_id.starts_with("ses_"), "{session}");
    assert_eq!(session["userId"], verified.body["user"]["id"]);
    let bundle = session["credentialBundle"].as_str().unwrap_or_default().to_string();
    remember_secret(&bundle);
    let key = browser.open(&bundle);
    remember_secret(&hex_of(&key.private_key()));

    let now = T0.millis();
    let whoami_body = body_at("whoami", now);
    let who = stamped(&server, &key, "/api/v2/session/whoami", &whoami_body).await;
    assert_eq!(who.status, 200, "{}", who.text);
    assert_eq!(who.body["user"]["email"], "ada@example.com");
    assert_eq!(who.body["sessionId"], session_id.as_str());
    assert_eq!(who.body["organizationIds"], json!([]));
    assert_eq!(who.body["expiresAt"], session["expiresAt"]);

    // The same body again (any instance sharing the database): a replay.
    stamped(&server, &key, "/api/v2/session/whoami", &whoami_body).await.assert_problem(401, "stamp_replayed");
    // A stamp for one endpoint is useless on another.
    stamped(&server, &key, "/api/v2/session/revoke", &body_at("whoami", now + 1))
        .await
        .assert_problem(401, "stamp_invalid");
    // Stale and future timestamps.
    for at in [now - 5 * 60_000 - 1, now + 5 * 60_000 + 1] {
        stamped(&server, &key, "/api/v2/session/whoami", &body_at("whoami", at))
            .await
            .assert_problem(401, "stamp_invalid");
    }
    // A body changed after signing, and no stamp at all.
    let signed = body_at("whoami", now + 2);
    let stamp = key.stamp(signed.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let changed = send(
        server
            .http
            .post(server.url("/api/v2/session/whoami"))
            .header("content-type", "application/json")
            .header("X-Stamp", stamp.value.as_str())
            .body(body_at("whoami", now + 3)),
    )
    .await;
    changed.assert_problem(401, "stamp_invalid");
    let unstamped = send(server.http.post(server.url("/api/v2/session/whoami")).json(&json!({}))).await;
    unstamped.assert_problem(401, "stamp_invalid");
    // A key that is no session key.
    let stranger = TurnkeyP256ApiKey::generate();
    stamped(&server, &stranger, "/api/v2/session/whoami", &body_at("whoami", now + 4))
        .await
        .assert_problem(401, "session_invalid");
    // The secret key is not a way in.
    let with_key =
        send(server.post("/api/v2/session/whoami", &json!({ "action": "whoami", "timestampMs": now }))).await;
    with_key.assert_problem(401, "stamp_invalid");

    let activity = stamped(&server, &key, "/api/v2/session/activity", &body_at("activity", now + 5)).await;
    assert_eq!(activity.status, 200, "{}", activity.text);
    let kinds: Vec<&str> =
        activity.body["events"].as_array().map_or(vec![], |e| e.iter().filter_map(|e| e["type"].as_str()).collect());
    assert_eq!(kinds, vec!["session.created", "otp.verified"], "{}", activity.text);

    let revoked = stamped(&server, &key, "/api/v2/session/revoke", &body_at("revoke", now + 6)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.body, json!({ "sessionId": session_id, "revoked": true }));
    stamped(&server, &key, "/api/v2/session/whoami", &body_at("whoami", now + 7))
        .await
        .assert_problem(401, "session_invalid");
    assert_eq!(server.store.count_events(&server.project_id, EventKind::SessionCreated).await, 1);
    assert_eq!(server.store.count_events(&server.project_id, EventKind::SessionRevoked).await, 1);

    // Nothing secret anywhere: not the bundle, not the session's private key.
    let events = server.store.list_events(&server.project_id, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let private = hex_of(&key.private_key());
    assert!(!format!("{events:?}").contains(&bundle) && !format!("{events:?}").contains(&private));
    let dump = server.db.logical_dump();
    assert!(!dump.contains(&bundle) && !dump.contains(&private) && !reveals(&dump, &code));
}

/// The 33-byte compressed form of an uncompressed key's hex: `02` or `03`
/// (as Y is even or odd) and X.
fn compressed(uncompressed: &str) -> String {
    assert_eq!(uncompressed.len(), 130, "{uncompressed}");
    let y_is_odd = u8::from_str_radix(&uncompressed[128..], 16).unwrap_or_default() % 2 == 1;
    format!("{}{}", if y_is_odd { "03" } else { "02" }, &uncompressed[2..66])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key given at verify only; a different key at send and verify is a
/// 400 that consumes nothing; a session key expires; an app signs a user
/// out everywhere with its secret key; at most 10 live keys a user.
#[tokio::test]
async fn session_keys_expire_are_revoked_everywhere_and_are_capped() {
    let server = TestServer::start().await;
    let (first, second) = (Browser::new(), Browser::new());
    let (otp_id, code) = code_for(&server, "ada@example.com", json!({ "targetPublicKey": first.target })).await;
    verify_otp(&server, json!({ "otpId": otp_id, "code": code, "targetPublicKey": second.target }))
        .await
        .assert_problem(400, "target_public_key_mismatch");
    // The same key, compressed, is the same key.
    let verified =
        verify_otp(&server, json!({ "otpId": otp_id, "code": code, "targetPublicKey": compressed(&first.target) }))
            .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let user_id = verified.body["user"]["id"].as_str().unwrap_or_default().to_string();
    let expires_at = verified.body["authSession"]["expiresAt"].as_str().unwrap_or_default().to_string();
    let bundle = verified.body["authSession"]["credentialBundle"].as_str().unwrap_or_default().to_string();
    remember_secret(&bundle);
    let key = first.open(&bundle);

    let (otp_id, code) = code_for(&server, "ada@example.com", json!({})).await;
    let at_verify = verify_otp(
        &server,
        json!({ "otpId": otp_id, "code": code, "targetPublicKey": second.target, "sessionExpiresIn": 3600 }),
    )
    .await;
    let bundle2 = at_verify.body["authSession"]["credentialBundle"].as_str().unwrap_or_default().to_string();
    remember_secret(&bundle2);
    let key2 = second.open(&bundle2);

    // The default lifetime is 15 minutes, exactly.
    let default_expiry = passgate_core::Timestamp::parse_rfc3339(&expires_at).map(|t| t.millis());
    assert_eq!(default_expiry, Some(T0.millis() + 900_000));
    server.clock.advance_millis(900_000);
    let now = T0.millis() + 900_000;
    stamped(&server, &key, "/api/v2/session/whoami", &body_at("whoami", now))
        .await
        .assert_problem(401, "session_invalid");
    let alive = stamped(&server, &key2, "/api/v2/session/whoami", &body_at("whoami", now)).await;
    assert_eq!(alive.status, 200, "{}", alive.text);

    let everywhere = send(server.post(&format!("/api/v2/users/{user_id}/sessions/revoke"), &json!({}))).await;
    assert_eq!(everywhere.status, 200, "{}", everywhere.text);
    assert_eq!(everywhere.body, json!({ "revoked": 1 }));
    stamped(&server, &key2, "/api/v2/session/whoami", &body_at("whoami", now + 1))
        .await
        .assert_problem(401, "session_invalid");
    send(server.post("/api/v2/users/usr_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b/sessions/revoke", &json!({})))
        .await
        .assert_problem(404, "not_found");

    // Eleven sign-ins with keys: the oldest key goes, ten stay live.
    let mut keys = Vec::new();
    for _ in 0..11 {
        server.clock.advance_seconds(181);
        let browser = Browser::new();
        let (otp_id, code) = code_for(&server, "ada@example.com", json!({ "targetPublicKey": browser.target })).await;
        let verified = verify_otp(&server, json!({ "otpId": otp_id, "code": code, "sessionExpiresIn": 86_400 })).await;
        let bundle = verified.body["authSession"]["credentialBundle"].as_str().unwrap_or_default().to_string();
        remember_secret(&bundle);
        keys.push(browser.open(&bundle));
    }
    let now = passgate_core::Clock::now(&server.clock).millis();
    for (i, key) in keys.iter().enumerate() {
        let reply = stamped(&server, key, "/api/v2/session/whoami", &body_at("whoami", now + i as i64)).await;
        assert_eq!(reply.status, if i == 0 { 401 } else { 200 }, "key {i}: {}", reply.text);
    }
}

/// A thousand stamps from Turnkey's stamper, over random keys and bodies,
/// all verify (DER's variable-length integers and high-S values included).
#[test]
fn a_thousand_turnkey_stamps_verify() {
    use passgate_core::stamp::StampedRequest;
    for i in 0..1000_i64 {
        let key = TurnkeyP256ApiKey::generate();
        let body = json!({ "action": "whoami", "timestampMs": (T0.millis() + i).to_string(), "n": i }).to_string();
        let stamp = key.stamp(body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        let checked = StampedRequest::verify(Some(stamp.value.as_bytes()), body.as_bytes(), "whoami", T0);
        let checked = checked.unwrap_or_else(|e| panic!("stamp {i}: {e}"));
        assert_eq!(checked.public_key(), hex_of(&key.compressed_public_key()));
    }
}

/// Bundles made by Turnkey's own enclave code open with ours: the format
/// is the same in both directions.
#[test]
fn turnkeys_bundles_open_with_ours() {
    use turnkey_enclave_encrypt::server::EnclaveEncryptServer;
    let private = [0x42u8; 32];
    let target = {
        use turnkey_api_key_stamper::TurnkeyP256ApiKey as Key;
        let key = Key::from_bytes(private.to_vec(), None::<Vec<u8>>).unwrap_or_else(|e| panic!("{e:?}"));
        passgate_core::credential::TargetPublicKey::parse_hex(&hex_of(&key.compressed_public_key()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let uncompressed: Vec<u8> = (0..65)
        .map(|i| {
            let hex = target.to_hex();
            u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap_or_default()
        })
        .collect();
    let receiver = uncompressed.try_into().unwrap_or_else(|_| panic!("65 bytes"));
    let bundle = EnclaveEncryptServer::auth_encrypt(&receiver, &[0xab; 32]).unwrap_or_else(|e| panic!("{e:?}"));
    let opened = passgate_core::credential::open_bundle(&bundle, &private).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*opened, [0xab; 32]);
}
