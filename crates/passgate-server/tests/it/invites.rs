//! Invites, organizations, lookup and users over HTTP, against the real
//! router, outbox and SMTP sink, on either backend.

use serde_json::{Value, json};

use crate::support::*;

fn put(server: &TestServer, path: &str, body: &Value) -> reqwest::RequestBuilder {
    server.http.put(server.url(path)).bearer_auth(&server.key).json(body)
}

fn delete_as(server: &TestServer, key: &str, path: &str) -> reqwest::RequestBuilder {
    server.http.delete(server.url(path)).bearer_auth(key)
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    Reply::of(request.send().await).await
}

async fn create_organization(server: &TestServer, key: &str, body: Value) -> String {
    let created = send(server.post_as(key, "/api/v2/organizations", &body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.str("organizationId")
}

async fn invite(server: &TestServer, body: Value) -> Reply {
    send(server.post("/api/v2/invites", &body)).await
}

/// The whole invite: created with metadata and a membership, emailed with
/// who invites and to what (and never the metadata), listed, accepted by
/// verify (which returns the metadata and grants the membership), and then
/// no longer revocable.
#[tokio::test]
async fn an_invite_goes_from_email_to_membership() {
    let server = TestServer::start().await;
    let org = create_organization(&server, &server.key, json!({ "name": "Research & Development" })).await;
    let metadata = json!({ "plan": "team", "note": "metadata-marker-7f3a" });
    let created = invite(
        &server,
        json!({
            "email": "Grace@Example.com",
            "validationUrl": CALLBACK,
            "metadata": metadata,
            "invitedBy": "Ada Lovelace",
            "organizationId": org,
            "role": "admin",
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let invite_id = created.str("inviteId");
    assert!(invite_id.starts_with("inv_"));
    let expires_at = created.str("expiresAt");

    let mail = server.sink.wait_for("grace@example.com").await;
    assert_eq!(mail.header("subject"), Some("Ada Lovelace invited you to Research & Development on Acme App"));
    assert!(mail.text.contains("expires in 7 days"), "{}", mail.text);
    let whole = format!("{:?}{}{}", mail.headers, mail.text, mail.html);
    assert!(!whole.contains("metadata-marker-7f3a") && !whole.contains("plan"), "metadata in the email");
    let token = mail.token().unwrap_or_else(|| panic!("no token in {}", mail.text));
    remember_secret(&token);

    let listed = send(server.get("/api/v2/invites?status=pending")).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let first = &listed.body["invites"][0];
    assert_eq!(first["id"], invite_id.as_str());
    assert_eq!(first["email"], "grace@example.com");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["expiresAt"], expires_at.as_str());
    assert_eq!((first["organizationId"].as_str(), first["role"].as_str()), (Some(org.as_str()), Some("admin")));
    assert!(first.get("metadata").is_none() && !listed.text.contains("metadata-marker"), "{}", listed.text);
    assert!(listed.body.get("nextCursor").is_none());

    // Not a member until the invite is accepted.
    let before = send(server.get(&format!("/api/v2/organizations/{org}"))).await;
    assert_eq!(before.body["members"], json!([]));

    let verified = server.verify(json!({ "token": token })).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["user"]["email"], "grace@example.com");
    assert_eq!(verified.body["user"]["isNewUser"], true);
    assert_eq!(verified.body["invite"], json!({ "id": invite_id, "metadata": metadata, "invitedBy": "Ada Lovelace" }));
    let user_id = verified.body["user"]["id"].as_str().unwrap_or_default().to_string();
    let claims = jwt_claims(verified.body["jwt"].as_str().unwrap_or_default());
    assert_eq!(claims["amr"], json!(["email_link"]));
    assert_eq!(claims["sub"], user_id.as_str());

    let after = send(server.get(&format!("/api/v2/organizations/{org}"))).await;
    assert_eq!(after.body["members"][0]["userId"], user_id.as_str());
    assert_eq!(after.body["members"][0]["role"], "admin");
    let lookup =
        send(server.post("/api/v2/lookup", &json!({ "filterType": "EMAIL", "filterValue": "GRACE@example.com" })))
            .await;
    assert_eq!(lookup.body, json!({ "userId": user_id, "organizationIds": [org] }));

    // Once only; and an accepted invite cannot be revoked.
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_used");
    let accepted = send(server.get("/api/v2/invites?status=accepted")).await;
    assert_eq!(accepted.body["invites"][0]["userId"], user_id.as_str());
    send(delete_as(&server, &server.key, &format!("/api/v2/invites/{invite_id}")))
        .await
        .assert_problem(409, "invite_accepted");

    assert_eq!(server.store.count_events(&server.project_id, passgate_store::EventKind::InviteCreated).await, 1);
    assert_eq!(server.store.count_events(&server.project_id, passgate_store::EventKind::InviteAccepted).await, 1);
    // The metadata stayed out of the logs and the events.
    assert!(!logs().contains("metadata-marker-7f3a"));
    let events = server.store.list_events(&server.project_id, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{events:?}").contains("metadata-marker-7f3a"));
}

fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap_or_default();
    serde_json::from_slice(&json).unwrap_or(Value::Null)
}

/// A revoked invite's link answers `token_revoked` at once; revoking twice
/// is the same revocation; an expired one answers `token_expired` and is
/// listed as expired.
#[tokio::test]
async fn revoked_and_expired_invites_refuse_their_links() {
    let server = TestServer::start().await;
    let revoked = invite(&server, json!({ "email": "rev@example.com", "validationUrl": CALLBACK })).await;
    let id = revoked.str("inviteId");
    let token = server.sink.wait_for("rev@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    let first = send(delete_as(&server, &server.key, &format!("/api/v2/invites/{id}"))).await;
    assert_eq!((first.status, first.body["status"].as_str()), (200, Some("revoked")), "{}", first.text);
    let again = send(delete_as(&server, &server.key, &format!("/api/v2/invites/{id}"))).await;
    assert_eq!(again.body["revokedAt"], first.body["revokedAt"]);
    server.verify(json!({ "token": token })).await.assert_problem(401, "token_revoked");
    assert_eq!(server.store.count_events(&server.project_id, passgate_store::EventKind::InviteRevoked).await, 1);

    let short =
        invite(&server, json!({ "email": "exp@example.com", "validationUrl": CALLBACK, "expiresIn": 60 })).await;
    assert_eq!(short.status, 201, "{}", short.text);
    let token = server.sink.wait_for("exp@example.com").await.token().unwrap_or_default();
    remember_secret(&token);
    server.clock.advance_seconds(61);
    let expired = server.verify(json!({ "token": token })).await;
    expired.assert_problem(401, "token_expired");
    let listed = send(server.get("/api/v2/invites?status=expired")).await;
    assert_eq!(listed.body["invites"][0]["id"], short.str("inviteId").as_str());
    assert_eq!(send(server.get("/api/v2/invites?status=revoked")).await.body["invites"][0]["id"], id.as_str());
}

/// Bad input is refused with a clear problem, and nothing is sent.
#[tokio::test]
async fn invite_input_is_checked() {
    let mut server = TestServer::start().await;
    let (_, other_key) = server.create_project(default_settings()).await;
    let foreign = create_organization(&server, &other_key, json!({ "name": "Elsewhere" })).await;
    let base = json!({ "email": "x@example.com", "validationUrl": CALLBACK });
    let with = |extra: Value| {
        let mut body = base.clone();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let big = "x".repeat(4089);
    for (extra, status, code) in [
        (json!({ "metadata": { "k": big } }), 400, "invalid_request"),
        (json!({ "metadata": ["a"] }), 400, "invalid_request"),
        (json!({ "metadata": "text" }), 400, "invalid_request"),
        (json!({ "expiresIn": 604_801 }), 400, "invalid_request"),
        (json!({ "expiresIn": 0 }), 400, "invalid_request"),
        (json!({ "role": "admin" }), 400, "invalid_request"),
        (json!({ "organizationId": foreign.clone() }), 400, "invalid_request"),
        (json!({ "organizationId": foreign.clone(), "role": "has space" }), 400, "invalid_request"),
        (json!({ "invitedBy": "two\nlines" }), 400, "invalid_request"),
        (json!({ "unknown": 1 }), 400, "invalid_request"),
        (json!({ "email": "not an address" }), 400, "invalid_email"),
        (json!({ "validationUrl": "https://evil.example.com/cb" }), 400, "validation_url_not_allowed"),
        (json!({ "organizationId": foreign.clone(), "role": "admin" }), 404, "not_found"),
        (json!({ "organizationId": "org_not-an-id", "role": "admin" }), 404, "not_found"),
    ] {
        let reply = invite(&server, with(extra.clone())).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{extra}: {}", reply.text);
    }
    // Exactly 4 KiB of metadata is kept.
    let fits =
        invite(&server, with(json!({ "email": "fits@example.com", "metadata": { "k": "x".repeat(4088) } }))).await;
    assert_eq!(fits.status, 201, "{}", fits.text);
    // Idempotency: a repeat answers the first response and sends nothing more.
    let body = with(json!({ "email": "idem@example.com" }));
    let key = || server.post("/api/v2/invites", &body).header("idempotency-key", "invite-1");
    let (first, repeat) = (send(key()).await, send(key()).await);
    assert_eq!((first.status, repeat.status), (201, 201));
    assert_eq!(first.body, repeat.body);
    // A page size out of range, an unknown status or parameter, a bad cursor.
    for query in ["limit=0", "limit=101", "status=open", "unknown=1", "cursor=xyz"] {
        send(server.get(&format!("/api/v2/invites?{query}"))).await.assert_problem(400, "invalid_request");
    }
    // Once stopped, the server has sent all it was going to.
    server.shutdown().await;
    assert_eq!(server.sink.mails_to("idem@example.com").len(), 1);
    assert!(server.sink.mails_to("x@example.com").is_empty(), "a refused invite sent an email");
}

/// Organizations: created with members by address (a user made for a new
/// one, an address listed twice refused), roles set and changed, members
/// removed; lookup answers by address and by id, and grants nothing.
#[tokio::test]
async fn organizations_hold_members_and_lookup_finds_them() {
    let server = TestServer::start().await;
    let (_, token) = server.login_token("ada@example.com").await;
    let ada =
        server.verify(json!({ "token": token })).await.body["user"]["id"].as_str().unwrap_or_default().to_string();
    let twice = send(server.post(
        "/api/v2/organizations",
        &json!({ "name": "Acme", "members": [{ "email": "a@example.com", "role": "x" }, { "email": "A@example.com", "role": "y" }] }),
    ))
    .await;
    twice.assert_problem(400, "invalid_request");
    assert!(twice.text.contains("members[1].email"), "{}", twice.text);
    let nested = send(server.post(
        "/api/v2/organizations",
        &json!({ "name": "Acme", "members": [{ "email": "a@example.com", "role": "x", "admin": true }] }),
    ))
    .await;
    nested.assert_problem(400, "invalid_request");
    for bad in [json!({ "name": "" }), json!({ "name": "Acme", "members": [{ "email": "a@example.com", "role": "" }] })]
    {
        send(server.post("/api/v2/organizations", &bad)).await.assert_problem(400, "invalid_request");
    }

    let org = create_organization(
        &server,
        &server.key,
        json!({ "name": "Acme", "members": [{ "email": "ada@example.com", "role": "owner" }, { "email": "Bob@Example.com", "role": "member" }] }),
    )
    .await;
    let got = send(server.get(&format!("/api/v2/organizations/{org}"))).await;
    assert_eq!(got.body["name"], "Acme");
    let members = got.body["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m["userId"] == ada.as_str() && m["role"] == "owner"));
    let bob = members
        .iter()
        .find(|m| m["email"] == "bob@example.com")
        .map(|m| m["userId"].as_str().unwrap_or_default().to_string());
    let bob = bob.unwrap_or_else(|| panic!("no bob: {}", got.text));
    let found = send(server.get("/api/v2/users?email=BOB@example.com")).await;
    assert_eq!(found.body["users"][0]["id"], bob.as_str());

    let changed =
        send(put(&server, &format!("/api/v2/organizations/{org}/members/{bob}"), &json!({ "role": "admin" }))).await;
    assert_eq!((changed.status, changed.body["role"].as_str()), (200, Some("admin")), "{}", changed.text);
    send(put(&server, &format!("/api/v2/organizations/{org}/members/{bob}"), &json!({ "role": "a b" })))
        .await
        .assert_problem(400, "invalid_request");
    let removed = send(delete_as(&server, &server.key, &format!("/api/v2/organizations/{org}/members/{bob}"))).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    send(delete_as(&server, &server.key, &format!("/api/v2/organizations/{org}/members/{bob}")))
        .await
        .assert_problem(404, "not_found");

    let by_id = send(server.post("/api/v2/lookup", &json!({ "filterType": "USER_ID", "filterValue": ada }))).await;
    assert_eq!(by_id.body, json!({ "userId": ada, "organizationIds": [org] }));
    let by_bob =
        send(server.post("/api/v2/lookup", &json!({ "filterType": "EMAIL", "filterValue": "bob@example.com" }))).await;
    assert_eq!(by_bob.body, json!({ "userId": bob, "organizationIds": [] }));
    let nobody =
        send(server.post("/api/v2/lookup", &json!({ "filterType": "EMAIL", "filterValue": "nobody@example.com" })))
            .await;
    assert_eq!((nobody.status, &nobody.body), (200, &json!({ "organizationIds": [] })));
    let malformed =
        send(server.post("/api/v2/lookup", &json!({ "filterType": "USER_ID", "filterValue": "usr_nope" }))).await;
    assert_eq!(malformed.body, json!({ "organizationIds": [] }));
    send(server.post("/api/v2/lookup", &json!({ "filterType": "PHONE", "filterValue": "1" })))
        .await
        .assert_problem(400, "invalid_request");
    send(server.post("/api/v2/lookup", &json!({ "filterType": "EMAIL", "filterValue": "not an address" })))
        .await
        .assert_problem(400, "invalid_email");
}

/// Every endpoint that takes an id answers another project's id with 404,
/// never a 403 that would confirm it exists; lookup and search find nothing.
#[tokio::test]
async fn another_projects_ids_are_not_found() {
    let server = TestServer::start().await;
    let (_, other_key) = server.create_project(default_settings()).await;
    let (_, token) = server.login_token("ada@example.com").await;
    let ada =
        server.verify(json!({ "token": token })).await.body["user"]["id"].as_str().unwrap_or_default().to_string();
    let org = create_organization(
        &server,
        &server.key,
        json!({ "name": "Mine", "members": [{ "email": "ada@example.com", "role": "owner" }] }),
    )
    .await;
    let invited =
        invite(&server, json!({ "email": "inv@example.com", "validationUrl": CALLBACK })).await.str("inviteId");

    let as_other =
        |method: reqwest::Method, path: String| server.http.request(method, server.url(&path)).bearer_auth(&other_key);
    use reqwest::Method;
    for (method, path) in [
        (Method::GET, format!("/api/v2/organizations/{org}")),
        (Method::DELETE, format!("/api/v2/organizations/{org}/members/{ada}")),
        (Method::GET, format!("/api/v2/users/{ada}")),
        (Method::DELETE, format!("/api/v2/users/{ada}")),
        (Method::DELETE, format!("/api/v2/invites/{invited}")),
    ] {
        send(as_other(method.clone(), path.clone())).await.assert_problem(404, "not_found");
    }
    send(as_other(Method::PUT, format!("/api/v2/organizations/{org}/members/{ada}")).json(&json!({ "role": "owner" })))
        .await
        .assert_problem(404, "not_found");
    let lookup =
        send(server.post_as(&other_key, "/api/v2/lookup", &json!({ "filterType": "USER_ID", "filterValue": ada })))
            .await;
    assert_eq!(lookup.body, json!({ "organizationIds": [] }));
    let search = send(server.http.get(server.url("/api/v2/users?email=ada@example.com")).bearer_auth(&other_key)).await;
    assert_eq!(search.body, json!({ "users": [] }));
    let listed = send(server.http.get(server.url("/api/v2/invites")).bearer_auth(&other_key)).await;
    assert_eq!(listed.body, json!({ "invites": [] }));
    // Still there for their own project.
    let own = send(server.get(&format!("/api/v2/organizations/{org}"))).await;
    assert_eq!(own.body["members"][0]["userId"], ada.as_str());
}

/// After `DELETE /users/{id}`, a dump of the database holds neither the
/// user's address nor the IP address nor the user agent they signed in
/// with; their pending link answers `token_invalid`; the address signs in
/// again as a new user.
#[tokio::test]
async fn an_erased_user_leaves_no_trace_in_a_dump() {
    let server = TestServer::start().await;
    let email = "erase.me@example.com";
    let (ip, agent) = ("198.51.100.23", "Erasable-Agent/7.1");
    let client = json!({ "ipAddress": ip, "userAgent": agent });
    let started = server.start_login(email, client.clone()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let token = server.sink.wait_for(email).await.token().unwrap_or_default();
    remember_secret(&token);
    let user =
        server.verify(json!({ "token": token })).await.body["user"]["id"].as_str().unwrap_or_default().to_string();
    server.start_login(email, client).await;
    let pending = server.sink.wait_for_count(email, 2).await.pop().and_then(|m| m.token()).unwrap_or_default();
    remember_secret(&pending);
    create_organization(
        &server,
        &server.key,
        json!({ "name": "Org", "members": [{ "email": email, "role": "owner" }] }),
    )
    .await;
    invite(&server, json!({ "email": email, "validationUrl": CALLBACK, "invitedBy": "Someone" })).await;
    server.sink.wait_for_count(email, 3).await;
    // Someone else, who stays.
    server.start_login("stays@example.com", json!({ "ipAddress": "192.0.2.1" })).await;
    let dump = server.db.logical_dump();
    assert!(dump.contains(email) && dump.contains(ip) && dump.contains(agent), "the dump does not see the data");

    let erased = send(delete_as(&server, &server.key, &format!("/api/v2/users/{user}"))).await;
    assert_eq!(erased.status, 204, "{}", erased.text);
    let dump = server.db.logical_dump();
    for trace in [email, ip, agent] {
        assert!(!dump.contains(trace), "{trace} is still in the database");
    }
    assert!(dump.contains("stays@example.com") && dump.contains("192.0.2.1"), "erased too much");
    send(server.get(&format!("/api/v2/users/{user}"))).await.assert_problem(404, "not_found");
    send(delete_as(&server, &server.key, &format!("/api/v2/users/{user}"))).await.assert_problem(404, "not_found");
    server.verify(json!({ "token": pending })).await.assert_problem(401, "token_invalid");
    assert_eq!(server.store.count_events(&server.project_id, passgate_store::EventKind::UserDeleted).await, 1);

    let (_, again) = server.login_token(email).await;
    let back = server.verify(json!({ "token": again })).await;
    assert_eq!(back.body["user"]["isNewUser"], true);
    assert_ne!(back.body["user"]["id"], user.as_str());
}
