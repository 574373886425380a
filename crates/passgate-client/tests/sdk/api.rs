//! Every endpoint through the typed client, against a real passgate.

use passgate_client::types::*;
use passgate_client::{Error, JwtVerifier, Pkce, StampedRequest};

use super::{CALLBACK, World, address};

fn start(email: &str, pkce: Option<&Pkce>) -> StartLoginRequest {
    StartLoginRequest {
        email: email.into(),
        validation_url: CALLBACK.into(),
        state: Some("s1".into()),
        code_challenge: pkce.map(Pkce::challenge),
        include_code: Some(true),
        ip_address: Some("203.0.113.7".into()),
        user_agent: Some("sdk-test".into()),
        locale: None,
    }
}

fn code_of(error: &Result<impl std::fmt::Debug, Error>) -> Option<ErrorCode> {
    error.as_ref().err().and_then(Error::code)
}

#[tokio::test]
async fn a_link_login_goes_through_the_client_and_its_jwt_verifies() {
    let world = World::start().await;
    let client = &world.client;
    let project = client.project().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((project.project_id.as_str(), project.issuer.as_str()), ("prj_dev", world.passgate.base.as_str()));

    let email = address("ada");
    let pkce = Pkce::generate();
    let started = client.start_login(&start(&email, Some(&pkce))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(started.login_id.starts_with("lgn_"));
    let mail = world.sink.wait_for(&email).await;
    let token = mail.token().unwrap_or_default();

    // Without the verifier: refused, and the token survives.
    let bare = VerifyLoginRequest { token: Some(token.clone()), ..Default::default() };
    assert_eq!(code_of(&client.verify_login(&bare).await), Some(ErrorCode::CodeVerifierMismatch));
    let request =
        VerifyLoginRequest { token: Some(token), code_verifier: Some(pkce.verifier().into()), ..Default::default() };
    let verified = client.verify_login(&request).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((verified.user.email.as_str(), verified.state.as_deref()), (email.as_str(), Some("s1")));
    assert!(verified.user.is_new_user);

    let verifier = JwtVerifier::new(client, &project.issuer, &project.project_id);
    let claims = verifier.verify(&verified.jwt).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (claims.sub.as_str(), claims.amr.as_slice()),
        (verified.user.id.as_str(), ["email_link".to_string()].as_slice())
    );
    // A verifier for another project refuses the same token.
    let other = JwtVerifier::new(client, &project.issuer, "prj_other");
    assert_eq!(other.verify(&verified.jwt).await.err(), Some(passgate_client::JwtError::Audience));

    let status = client.login_status(&started.login_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status.status, status.email.status), (LoginStatus::Verified, EmailDeliveryStatus::Sent));

    // Used: the error carries its stable code and when it was used.
    let again = client.verify_login(&request).await;
    assert_eq!(code_of(&again), Some(ErrorCode::TokenUsed));
    let problem =
        again.err().and_then(|e| e.api().map(|a| a.problem().clone())).unwrap_or_else(|| panic!("no problem"));
    assert!(problem.used_at.is_some() && problem.request_id.starts_with("req_"), "{problem:?}");
}

#[tokio::test]
async fn codes_users_organizations_and_lookup() {
    let world = World::start().await;
    let client = &world.client;
    let email = address("grace");
    let sent = client
        .send_otp(&SendOtpRequest {
            email: email.clone(),
            otp_length: Some(8),
            alphanumeric: None,
            expires_in: None,
            app_name: None,
            target_public_key: None,
            ip_address: None,
            user_agent: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = world.sink.wait_for(&email).await.one_time_code().unwrap_or_default();
    assert_eq!(code.len(), 8);
    let wrong = VerifyOtpRequest {
        otp_id: sent.otp_id.clone(),
        code: "00000000".into(),
        target_public_key: None,
        session_expires_in: None,
    };
    if code != "00000000" {
        assert_eq!(code_of(&client.verify_otp(&wrong).await), Some(ErrorCode::OtpInvalid));
    }
    let right = VerifyOtpRequest { code, ..wrong };
    let verified = client.verify_otp(&right).await.unwrap_or_else(|e| panic!("{e}"));
    let user_id = verified.user.id.clone();
    assert!(verified.auth_session.is_none());

    let found = client.find_user_by_email(&email.to_uppercase()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.map(|u| u.id), Some(user_id.clone()));
    assert_eq!(client.get_user(&user_id).await.unwrap_or_else(|e| panic!("{e}")).email, email);
    assert_eq!(client.find_user_by_email(&address("nobody")).await.unwrap_or_else(|e| panic!("{e}")), None);

    let created = client
        .create_organization(&CreateOrganizationRequest {
            name: "Acme".into(),
            members: Some(vec![NewMemberRequest { email: email.clone(), role: "admin".into() }]),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let org = client.get_organization(&created.organization_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((org.name.as_str(), org.members.len(), org.members[0].role.as_str()), ("Acme", 1, "admin"));
    let member = client.set_member_role(&org.id, &user_id, "viewer").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member.role, "viewer");
    let lookup = LookupRequest { filter_type: LookupFilter::Email, filter_value: email.clone() };
    let found = client.lookup(&lookup).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (found.user_id.as_deref(), found.organization_ids.as_slice()),
        (Some(user_id.as_str()), [org.id.clone()].as_slice())
    );
    client.remove_member(&org.id, &user_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(client.lookup(&lookup).await.unwrap_or_else(|e| panic!("{e}")).organization_ids.is_empty());
    assert_eq!(code_of(&client.get_organization("org_missing").await), Some(ErrorCode::NotFound));

    assert_eq!(client.revoke_user_sessions(&user_id).await.unwrap_or_else(|e| panic!("{e}")).revoked, 0);
    client.delete_user(&user_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code_of(&client.get_user(&user_id).await), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn invites_events_webhooks_and_stamped_requests() {
    let world = World::start().await;
    let client = &world.client;
    let email = address("invitee");
    let invite = client
        .create_invite(&CreateInviteRequest {
            email: email.clone(),
            validation_url: CALLBACK.into(),
            expires_in: Some(3600),
            metadata: Some(serde_json::json!({"plan": "team"})),
            invited_by: Some("ada".into()),
            organization_id: None,
            role: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pending = client
        .list_invites(&InviteListQuery { status: Some(InviteStatus::Pending), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(pending.invites.iter().any(|i| i.id == invite.invite_id));
    let revoked = client.revoke_invite(&invite.invite_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revoked.status, InviteStatus::Revoked);

    let events = client
        .list_events(&EventListQuery { kind: Some("invite.created,invite.revoked".into()), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = events
        .events
        .iter()
        .filter(|e| e.invite_id.as_deref() == Some(&invite.invite_id))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["invite.revoked", "invite.created"], "newest first");

    // passgate dev allows webhooks to plain http on this machine.
    let hook = client
        .create_webhook(&CreateWebhookRequest {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["auth.verified".into()],
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(hook.secret.starts_with("whsec_"));
    assert!(
        client
            .list_webhooks()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .webhooks
            .iter()
            .any(|w| w.webhook_id == hook.webhook_id)
    );
    assert_eq!(client.get_webhook(&hook.webhook_id).await.unwrap_or_else(|e| panic!("{e}")).url, hook.url);
    let rotated = client.rotate_webhook_secret(&hook.webhook_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(rotated.secret, hook.secret);
    assert!(client.list_deliveries(&hook.webhook_id).await.unwrap_or_else(|e| panic!("{e}")).deliveries.is_empty());
    client.delete_webhook(&hook.webhook_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code_of(&client.get_webhook(&hook.webhook_id).await), Some(ErrorCode::NotFound));

    // A stamped request is passed through as is; a bad stamp is refused
    // with passgate's own code.
    let forged =
        StampedRequest { stamp: "bm90LWEtc3RhbXA".into(), body: br#"{"action":"whoami","timestampMs":"1"}"#.to_vec() };
    assert_eq!(code_of(&client.session_whoami(&forged).await), Some(ErrorCode::StampInvalid));

    let jwks = client.jwks().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!jwks.keys.is_empty() && jwks.keys.iter().all(|k| k.alg == "EdDSA"));
    assert_eq!(client.ready().await.unwrap_or_else(|e| panic!("{e}")).status, "ready");
    assert_eq!(client.health().await.unwrap_or_else(|e| panic!("{e}")).status, "ok");
    let document = client.openapi().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(document["paths"]["/api/v2/project"]["get"].is_object(), "the document names the project endpoint");
}

#[tokio::test]
async fn errors_carry_their_stable_codes_and_never_the_key() {
    let world = World::start().await;
    let wrong =
        passgate_client::Client::new(&world.passgate.base, passgate_client::SecretKey::new("sk_test_WrongWrongWrong"))
            .unwrap_or_else(|e| panic!("{e}"));
    let refused = wrong.project().await;
    assert_eq!(code_of(&refused), Some(ErrorCode::Unauthorized));
    let shown = format!("{:?} {}", wrong, refused.err().map(|e| e.to_string()).unwrap_or_default());
    assert!(!shown.contains("WrongWrongWrong"), "{shown}");

    let client = &world.client;
    let malformed = VerifyLoginRequest { token: Some("short".into()), ..Default::default() };
    assert_eq!(code_of(&client.verify_login(&malformed).await), Some(ErrorCode::InvalidTokenFormat));
    let bad_email = StartLoginRequest { email: "no-at-sign".into(), ..start("x@example.com", None) };
    assert_eq!(code_of(&client.start_login(&bad_email).await), Some(ErrorCode::InvalidEmail));

    // The per-recipient limit (5 per 15 minutes in the dev project): the
    // sixth is refused with how long to wait.
    let email = address("busy");
    for _ in 0..5 {
        client.start_login(&start(&email, None)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let limited = client.start_login(&start(&email, None)).await;
    assert_eq!(code_of(&limited), Some(ErrorCode::RateLimited));
    assert!(limited.err().and_then(|e| e.api().and_then(|a| a.retry_after())).is_some_and(|d| d.as_secs() > 0));

    // The same Idempotency-Key with another body: refused, nothing sent.
    let other = address("other");
    let first = client.start_login_with_key(&start(&other, None), "key-1").await.unwrap_or_else(|e| panic!("{e}"));
    let again = client.start_login_with_key(&start(&other, None), "key-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, first, "a repeat answers with the first response");
    let third = address("third");
    assert_eq!(
        code_of(&client.start_login_with_key(&start(&third, None), "key-1").await),
        Some(ErrorCode::IdempotencyKeyReused)
    );
}
