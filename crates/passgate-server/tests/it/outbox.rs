//! The durable outbox: delivery states, retries with backoff, giving up,
//! leases between workers, and template overrides.

use std::sync::Arc;
use std::time::Duration;

use passgate_core::secret::ServerSecret;
use passgate_server::mail::outbox::{Outbox, OutboxConfig};
use passgate_server::mail::templates::Templates;
use passgate_server::mail::transport::Mailer;
use passgate_store::{Lease, Store};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn a_permanent_rejection_gives_up_at_once_and_is_recorded() {
    let server = TestServer::start().await;
    server.sink.set_behaviour(Behaviour::RejectRecipient(550));
    let login_id = server.start_login("nobody@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "failed").await;
    assert_eq!(state["email"], json!({ "status": "failed", "attempts": 1, "lastError": "recipient_rejected (550)" }));
    let events = server.store.list_events(&server.project_id, 10).await.unwrap_or_else(|e| panic!("{e}"));
    let failed = events
        .iter()
        .find(|e| e.kind == passgate_core::EventKind::EmailFailed)
        .unwrap_or_else(|| panic!("no email.failed event"));
    assert_eq!(failed.login_id.as_ref().map(|id| id.as_str()), Some(login_id.as_str()));
    assert_eq!(failed.reason.as_deref(), Some("recipient_rejected (550)"));
}

#[tokio::test]
async fn a_temporary_failure_is_retried_with_backoff_until_it_is_sent() {
    let server = TestServer::start().await;
    server.sink.set_behaviour(Behaviour::RejectRecipient(451));
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "retrying").await;
    assert_eq!(state["email"], json!({ "status": "retrying", "attempts": 1, "lastError": "message_rejected (451)" }));
    server.sink.set_behaviour(Behaviour::Accept);
    // Not before the backoff (5 s on the server's clock) has passed: the
    // email is due then, and no worker can claim it a moment before.
    assert_eq!(server.store.next_email_due().await.unwrap_or_else(|e| panic!("{e}")), Some(T0.plus_seconds(5)));
    let early = Lease { owner: "early".into(), now: T0.plus_millis(4_999), until: T0.plus_seconds(60) };
    assert!(server.store.claim_emails(early, 10).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(server.sink.mails().is_empty());
    server.clock.advance_seconds(5);
    let mail = server.sink.wait_for("ada@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    let state = server.wait_email_status(&login_id, "sent").await;
    assert_eq!(state["email"], json!({ "status": "sent", "attempts": 2 }));
}

#[tokio::test]
async fn retries_end_in_a_recorded_failure_never_in_silence() {
    let outbox = OutboxConfig { max_attempts: 3, idle_poll: Duration::from_millis(20), ..OutboxConfig::default() };
    let server = TestServer::start_with(Options { outbox: Some(outbox), ..Options::default() }).await;
    server.sink.set_behaviour(Behaviour::RejectRecipient(421));
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    server.wait_email_status(&login_id, "retrying").await;
    server.clock.advance_seconds(5);
    for _ in 0..200 {
        if server.login_state(&login_id).await["email"]["attempts"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.clock.advance_seconds(10);
    let state = server.wait_email_status(&login_id, "failed").await;
    assert_eq!(state["email"]["attempts"], 3);
    assert_eq!(state["email"]["lastError"], "message_rejected (421)");
    let events = server.store.list_events(&server.project_id, 10).await.unwrap_or_default();
    assert!(events.iter().any(|e| e.kind == passgate_core::EventKind::EmailFailed));
}

#[tokio::test]
async fn an_unreachable_relay_is_reported_as_connection_refused() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let dead_url = format!("smtp://{}", closed.local_addr().unwrap_or_else(|e| panic!("{e}")));
    drop(closed);
    let server = TestServer::start_with(Options { smtp_url: Some(dead_url), ..Options::default() }).await;
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "retrying").await;
    assert_eq!(state["email"], json!({ "status": "retrying", "attempts": 1, "lastError": "connection_refused" }));
}

fn worker<S: Store>(store: S, server: &TestServer, mailer: Mailer) -> Outbox<S> {
    Outbox::new(
        store,
        Arc::new(server.clock.clone()),
        Arc::new(ServerSecret::from_base64(SECRET_B64, None).unwrap_or_else(|e| panic!("{e}"))),
        Arc::new(Templates::load(None).unwrap_or_else(|e| panic!("{e}"))),
        mailer,
        OutboxConfig::default(),
        Arc::new(passgate_server::metrics::Metrics::default()),
    )
}

async fn race<S: Store>(workers: &[Outbox<S>]) {
    let runs = workers.iter().map(|w| async move {
        for _ in 0..5 {
            w.run_once().await.unwrap_or_else(|e| panic!("{e}"));
        }
    });
    futures::future::join_all(runs).await;
}

#[tokio::test]
async fn several_workers_never_send_one_email_twice() {
    let mut server = TestServer::start().await;
    let mailer = || {
        Mailer::new(
            Some(&secrecy::SecretString::from(server.sink.url())),
            None,
            "x <x@example.com>".parse().unwrap_or_else(|e| panic!("{e:?}")),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut login_ids = Vec::new();
    for i in 0..30 {
        login_ids.push(server.start_login(&format!("u{i}@example.com"), json!({})).await.str("loginId"));
    }
    // Three extra workers race the server's own over the same queue.
    match &server.store {
        TestStore::Sqlite(s) => race(&(0..3).map(|_| worker(s.clone(), &server, mailer())).collect::<Vec<_>>()).await,
        TestStore::Postgres(s) => race(&(0..3).map(|_| worker(s.clone(), &server, mailer())).collect::<Vec<_>>()).await,
    }
    for i in 0..30 {
        server.sink.wait_for(&format!("u{i}@example.com")).await;
    }
    // The extra workers are done; the server's own finishes what it is
    // sending as it stops. Nothing can be sent after that.
    for id in &login_ids {
        server.wait_email_status(id, "sent").await;
    }
    server.shutdown().await;
    let mails = server.sink.mails();
    for m in &mails {
        remember_secret(&m.token().unwrap_or_default());
    }
    assert_eq!(mails.len(), 30, "exactly one email per start");
    assert!(server.store.unsent_emails(T0).await.is_empty());
    for id in login_ids {
        let login_id = passgate_core::LoginId::parse(&id).unwrap_or_else(|| panic!("{id}"));
        let view = server.store.get_login(&server.project_id, &login_id, T0).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.map(|v| v.email.attempts), Some(1));
    }
}

#[tokio::test]
async fn operators_can_override_templates_globally_and_per_project() {
    let dir =
        std::env::temp_dir().join(format!("passgate-it-templates-{}", passgate_core::ids::IdKind::Request.generate()));
    let project_id = passgate_core::ProjectId::generate();
    std::fs::create_dir_all(dir.join(project_id.as_str())).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("login.subject.txt"), "Your {{ app_name }} link").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(project_id.as_str()).join("login.txt"), "Hello {{ email }}: {{ link }}")
        .unwrap_or_else(|e| panic!("{e}"));
    let options = Options { templates_dir: Some(dir), project_id: Some(project_id), ..Options::default() };
    let server = TestServer::start_with(options).await;
    server.start_login("ada@example.com", json!({})).await;
    let mail = server.sink.wait_for("ada@example.com").await;
    let token = mail.token().unwrap_or_default();
    remember_secret(&token);
    assert_eq!(mail.header("Subject"), Some("Your Acme App link"), "the global override applies");
    assert_eq!(
        mail.text.trim_end(),
        format!("Hello ada@example.com: {CALLBACK}?token={token}"),
        "the project's own body"
    );
    assert!(mail.html.contains("Sign in to Acme App"), "parts without an override keep the built-in");

    let (_, other_key) = server.create_project(default_settings()).await;
    let body = json!({ "email": "bob@example.com", "validationUrl": CALLBACK });
    assert_eq!(Reply::of(server.post_as(&other_key, "/api/v2/auth/start", &body).send().await).await.status, 202);
    let other = server.sink.wait_for("bob@example.com").await;
    remember_secret(&other.token().unwrap_or_default());
    assert_eq!(other.header("Subject"), Some("Your Acme App link"));
    assert!(other.text.starts_with("Sign in to"), "another project keeps the built-in body");
}

async fn delivered_over(options: Options) -> (TestServer, Value) {
    let server = TestServer::start_with(options).await;
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "sent").await;
    (server, state)
}

#[tokio::test]
async fn starttls_is_used_when_required_and_the_relay_is_trusted() {
    let ca = TestCa::new();
    let ca_pem = ca.ca_pem.clone();
    let options = Options {
        sink: Some(SinkOptions { tls: Some((TlsMode::StartTls, ca)), auth: None, ..SinkOptions::default() }),
        smtp_url: Some("smtp://localhost:{port}?tls=required".into()),
        smtp_ca_pem: Some(ca_pem),
        ..Options::default()
    };
    let (server, _) = delivered_over(options).await;
    let mail = server.sink.wait_for("ada@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    assert!(mail.tls, "the message must travel inside TLS");
}

#[tokio::test]
async fn implicit_tls_and_authentication_work_together() {
    let ca = TestCa::new();
    let ca_pem = ca.ca_pem.clone();
    let options = Options {
        sink: Some(SinkOptions {
            tls: Some((TlsMode::Implicit, ca)),
            auth: Some(("mailer".into(), "p@ss word:1".into())),
            ..SinkOptions::default()
        }),
        smtp_url: Some("smtps://mailer:p%40ss%20word%3A1@localhost:{port}".into()),
        smtp_ca_pem: Some(ca_pem),
        ..Options::default()
    };
    remember_secret("p@ss word:1");
    let (server, _) = delivered_over(options).await;
    let mail = server.sink.wait_for("ada@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    assert!(mail.tls);
    assert_eq!(mail.auth_user.as_deref(), Some("mailer"));
    assert!(mail.pipelined, "the relay advertises PIPELINING after TLS and before AUTH");
}

/// Credentials never travel in clear: with a user and password STARTTLS is
/// required by default, and a relay that offers none (or whose offer an
/// attacker stripped) gets no AUTH, whether TLS was left to its default or
/// asked for opportunistically; the email waits (`tls`) instead.
#[tokio::test]
async fn credentials_are_never_sent_in_clear() {
    remember_secret("hunter2");
    for url in ["smtp://mailer:hunter2@127.0.0.1:{port}", "smtp://mailer:hunter2@127.0.0.1:{port}?tls=opportunistic"] {
        let options = Options {
            sink: Some(SinkOptions {
                tls: None,
                auth: Some(("mailer".into(), "hunter2".into())),
                ..SinkOptions::default()
            }),
            smtp_url: Some(url.into()),
            ..Options::default()
        };
        let server = TestServer::start_with(options).await;
        let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
        let state = server.wait_email_status(&login_id, "retrying").await;
        assert_eq!(state["email"]["lastError"], "tls", "{url}");
        assert!(server.sink.auth_attempts().is_empty(), "{url}: AUTH was sent in clear");
        assert!(server.sink.mails().is_empty());
    }
}

/// With credentials and no `tls=`, a relay that offers STARTTLS gets them
/// inside TLS.
#[tokio::test]
async fn credentials_go_inside_starttls_by_default() {
    let ca = TestCa::new();
    let ca_pem = ca.ca_pem.clone();
    let options = Options {
        sink: Some(SinkOptions {
            tls: Some((TlsMode::StartTls, ca)),
            auth: Some(("mailer".into(), "hunter2".into())),
            ..SinkOptions::default()
        }),
        smtp_url: Some("smtp://mailer:hunter2@localhost:{port}".into()),
        smtp_ca_pem: Some(ca_pem),
        ..Options::default()
    };
    remember_secret("hunter2");
    let (server, _) = delivered_over(options).await;
    let mail = server.sink.wait_for("ada@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    assert_eq!((mail.auth_user.as_deref(), mail.tls), (Some("mailer"), true));
    assert_eq!(server.sink.auth_attempts(), vec![true], "AUTH only inside TLS");
}

/// Without credentials, plain SMTP to a local relay works when asked for.
#[tokio::test]
async fn plain_smtp_without_credentials_when_asked_for() {
    let options = Options { smtp_url: Some("smtp://127.0.0.1:{port}?tls=none".into()), ..Options::default() };
    let (server, _) = delivered_over(options).await;
    let mail = server.sink.wait_for("ada@example.com").await;
    remember_secret(&mail.token().unwrap_or_default());
    assert!(!mail.tls);
}

/// A second outbox worker on `store`, on the system clock, with `lease`.
fn rival<S: Store>(store: S, server: &TestServer, lease: Duration) -> Outbox<S> {
    let mailer = Mailer::new(
        Some(&secrecy::SecretString::from(server.sink.url())),
        None,
        "x <x@example.com>".parse().unwrap_or_else(|e| panic!("{e:?}")),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Outbox::new(
        store,
        Arc::new(passgate_server::SystemClock),
        Arc::new(ServerSecret::from_base64(SECRET_B64, None).unwrap_or_else(|e| panic!("{e}"))),
        Arc::new(Templates::load(None).unwrap_or_else(|e| panic!("{e}"))),
        mailer,
        OutboxConfig { lease, ..OutboxConfig::default() },
        Arc::new(passgate_server::metrics::Metrics::default()),
    )
}

/// Runs `worker` over the queue again and again until `until`.
async fn watch_the_queue<S: Store>(worker: Outbox<S>, until: tokio::time::Instant) {
    while tokio::time::Instant::now() < until {
        worker.run_once().await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A relay slower than a lease: the worker sending an email keeps renewing
/// its lease, so another worker watching the same queue never takes it over
/// and sends it a second time (before, a lapsed lease did exactly that).
#[tokio::test]
async fn a_slow_relay_gets_each_email_once() {
    let lease = Duration::from_millis(900);
    let options = Options {
        sink: Some(SinkOptions { delay: Some(Duration::from_millis(2500)), ..SinkOptions::default() }),
        outbox: Some(OutboxConfig { lease, idle_poll: Duration::from_millis(50), ..OutboxConfig::default() }),
        system_clock: true,
        ..Options::default()
    };
    let mut server = TestServer::start_with(options).await;
    let mut login_ids = Vec::new();
    for i in 0..4 {
        login_ids.push(server.start_login(&format!("slow{i}@example.com"), json!({})).await.str("loginId"));
    }
    // A second worker looks at the queue all the while the first is sending.
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    match &server.store {
        TestStore::Sqlite(s) => watch_the_queue(rival(s.clone(), &server, lease), until).await,
        TestStore::Postgres(s) => watch_the_queue(rival(s.clone(), &server, lease), until).await,
    }
    for id in &login_ids {
        server.wait_email_status(id, "sent").await;
    }
    server.shutdown().await;
    for i in 0..4 {
        let mails = server.sink.mails_to(&format!("slow{i}@example.com"));
        for m in &mails {
            remember_secret(&m.token().unwrap_or_default());
        }
        assert_eq!(mails.len(), 1, "slow{i} got {} emails", mails.len());
    }
}

/// Two messages on one pooled connection, each checked for what arrived.
async fn two_messages_over(sink: SinkOptions) -> Vec<Mail> {
    let server = TestServer::start_with(Options { sink: Some(sink), ..Options::default() }).await;
    let mut mails = Vec::new();
    for to in ["ada@example.com", "bob@example.com"] {
        let login_id = server.start_login(to, json!({})).await.str("loginId");
        server.wait_email_status(&login_id, "sent").await;
        let mail = server.sink.wait_for(to).await;
        remember_secret(&mail.token().unwrap_or_default());
        assert_eq!(mail.to, vec![to.to_string()]);
        assert!(mail.text.starts_with("Sign in to"), "the whole body arrives: {:?}", mail.text);
        mails.push(mail);
    }
    mails
}

#[tokio::test]
async fn a_relay_that_pipelines_gets_the_envelope_in_one_write() {
    let mails = two_messages_over(SinkOptions::default()).await;
    assert!(mails.iter().all(|m| m.pipelined));
}

#[tokio::test]
async fn a_relay_that_does_not_pipeline_gets_one_command_at_a_time() {
    let mails = two_messages_over(SinkOptions { no_pipelining: true, ..SinkOptions::default() }).await;
    assert!(mails.iter().all(|m| !m.pipelined));
}

#[tokio::test]
async fn wrong_credentials_and_untrusted_certificates_are_reported_and_retried() {
    let ca = TestCa::new();
    let ca_pem = ca.ca_pem.clone();
    let options = Options {
        sink: Some(SinkOptions {
            tls: Some((TlsMode::StartTls, ca)),
            auth: Some(("mailer".into(), "right".into())),
            ..SinkOptions::default()
        }),
        smtp_url: Some("smtp://mailer:wrong@localhost:{port}".into()),
        smtp_ca_pem: Some(ca_pem),
        ..Options::default()
    };
    let server = TestServer::start_with(options).await;
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "retrying").await;
    assert_eq!(state["email"]["lastError"], "auth_failed (535)");

    // TLS required, but the relay's certificate is from a CA we were not told to trust.
    let options = Options {
        sink: Some(SinkOptions { tls: Some((TlsMode::StartTls, TestCa::new())), auth: None, ..SinkOptions::default() }),
        smtp_url: Some("smtp://localhost:{port}?tls=required".into()),
        ..Options::default()
    };
    let server = TestServer::start_with(options).await;
    let login_id = server.start_login("ada@example.com", json!({})).await.str("loginId");
    let state = server.wait_email_status(&login_id, "retrying").await;
    assert_eq!(state["email"]["lastError"], "tls");
    assert!(server.sink.mails().is_empty());
}
