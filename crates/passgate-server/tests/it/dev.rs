//! `passgate dev` as a developer uses it, on the real binary: a sign-in
//! finished in the browser through the stand-in callback, the mailbox, the
//! dev folder found from a subfolder, and `--reset-limits`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::*;
use crate::support::*;

/// The dev key the banner printed.
async fn dev_key(dev: &Running) -> String {
    let line = dev.wait_for_line("Secret key:").await;
    let key = line.split_whitespace().last().unwrap_or_default().to_string();
    remember_secret(&key);
    key
}

/// A browser on the dev pages: sends the pages' own `Origin` with its forms
/// and follows no redirects (so each step can be looked at).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_else(|e| panic!("{e}"))
}

async fn form(http: &reqwest::Client, dev: &Running, path: &str, fields: &[(&str, &str)]) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    Reply::of(
        http.post(format!("{}{path}", dev.base))
            .header("origin", &dev.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await,
    )
    .await
}

/// The mailbox page once it shows an email to `to` (the worker sends
/// right after the start commits).
async fn mailbox_with(http: &reqwest::Client, dev: &Running, to: &str) -> Reply {
    for _ in 0..200 {
        let page = Reply::of(http.get(format!("{}/_dev/mailbox", dev.base)).send().await).await;
        if page.text.contains(&format!("<strong>{to}</strong>")) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no email to {to} in the mailbox");
}

/// What follows `after` in `text`, up to the next `"`.
fn attribute_after<'a>(text: &'a str, after: &str) -> &'a str {
    let start = text.find(after).unwrap_or_else(|| panic!("no {after:?} in {text}")) + after.len();
    text[start..].split('"').next().unwrap_or_default()
}

/// The claims of a JWT (its signature is checked elsewhere: auth_flow.rs).
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}"))
}

/// The test: the dev callback completes a login from a mailbox link.
/// Opening the link uses nothing (a second opening still offers the
/// sign-in); the button's POST signs in once and shows the JWT.
#[tokio::test]
async fn the_dev_callback_completes_a_login_from_a_mailbox_link() {
    let dir = temp_dir();
    let dev = Running::spawn(&["dev"], &[], &dir).await;
    let key = dev_key(&dev).await;
    let http = browser();

    let sent = form(&http, &dev, "/_dev/start", &[("email", "ada@example.com")]).await;
    assert_eq!(sent.status, 303, "{}", sent.text);
    assert_eq!(sent.header("location"), Some("/_dev/mailbox"));

    let mailbox = mailbox_with(&http, &dev, "ada@example.com").await;
    // The page never reloads itself; it runs only its own script, by nonce.
    assert!(!mailbox.text.contains("http-equiv=\"refresh\""), "the mailbox reloads itself");
    let csp = mailbox.header("content-security-policy").unwrap_or_default().to_string();
    let nonce =
        attribute_after(&csp, "'nonce-").trim_end_matches(['\'', ';', ' ']).split('\'').next().unwrap_or_default();
    assert!(nonce.len() >= 16, "{csp}");
    assert!(mailbox.text.contains(&format!("<script nonce=\"{nonce}\">")), "{}", mailbox.text);
    assert_eq!(mailbox.header("cache-control"), Some("no-store"));
    // The HTML part as sent, in a frame that runs no script and posts no form.
    let sandbox = attribute_after(&mailbox.text, "<iframe sandbox=\"");
    assert!(
        !sandbox.contains("allow-scripts")
            && !sandbox.contains("allow-forms")
            && !sandbox.contains("allow-same-origin")
    );
    assert!(mailbox.text.contains("srcdoc=\"&lt;base target=&quot;_blank&quot;&gt;"), "{}", mailbox.text);
    // The mailbox says that it does not survive a restart.
    assert!(mailbox.text.contains("restarting <code>passgate dev</code> empties it"));

    let link = attribute_after(&mailbox.text, "<a class=\"button primary\" href=\"").replace("&amp;", "&");
    assert!(link.starts_with(&format!("{}/_dev/callback?token=", dev.base)), "{link}");
    let token = link.split("token=").nth(1).unwrap_or_default().split('&').next().unwrap_or_default().to_string();
    remember_secret(&token);
    assert_eq!(attribute_after(&mailbox.text, "data-copy=\"").replace("&amp;", "&"), link, "copy link");
    assert!(mailbox.text.contains(&format!("data-copy=\"{token}\" data-label=\"Copy token\"")), "copy token");
    let code = attribute_after(&mailbox.text, "code <code>").split('<').next().unwrap_or_default().to_string();
    assert_eq!(code.len(), 6, "{}", mailbox.text);
    assert!(mailbox.text.contains(&format!("data-copy=\"{code}\" data-label=\"Copy code\"")), "copy code");

    // Opening the link twice (a mail scanner, then the user) uses nothing.
    for _ in 0..2 {
        let page = Reply::of(http.get(&link).send().await).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains("Finish signing in"));
        assert!(page.text.contains(&format!("name=\"token\" value=\"{token}\"")));
    }

    // A form from another site is refused, and uses nothing either.
    let forged = Reply::of(
        http.post(format!("{}/_dev/callback", dev.base))
            .header("origin", "http://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await,
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);

    let signed_in = form(&http, &dev, "/_dev/callback", &[("token", &token), ("code_verifier", "")]).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    assert!(signed_in.text.contains("Signed in as ada@example.com"), "{}", signed_in.text);
    assert!(signed_in.text.contains("new user: yes"));
    let jwt = attribute_after(&signed_in.text, "<pre>").split('<').next().unwrap_or_default().to_string();
    let claims = jwt_claims(&jwt);
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["aud"], "prj_dev");
    assert_eq!(claims["iss"], dev.base.as_str());

    // Once only: the same link again is refused as the API refuses it.
    let again = form(&http, &dev, "/_dev/callback", &[("token", &token)]).await;
    assert_eq!(again.status, 401, "{}", again.text);
    assert!(again.text.contains("token_used"), "{}", again.text);

    // The dev project admits the stand-in callback through the API as well.
    let started = Reply::of(
        reqwest::Client::new()
            .post(format!("{}/api/v2/auth/start", dev.base))
            .bearer_auth(&key)
            .json(&json!({ "email": "bob@example.com", "validationUrl": format!("{}/_dev/callback", dev.base) }))
            .send()
            .await,
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_clean(&dev.output());
    assert!(!dev.output().contains(&token), "the token reached the logs");
}

/// The mailbox page learns of new emails by polling a count, not by reloading.
#[tokio::test]
async fn the_mailbox_counts_what_arrived() {
    let dir = temp_dir();
    let dev = Running::spawn(&["dev"], &[], &dir).await;
    let http = browser();
    let count = || async {
        let reply = Reply::of(http.get(format!("{}/_dev/mailbox/count", dev.base)).send().await).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        serde_json::from_str::<Value>(&reply.text).unwrap_or_else(|e| panic!("{e}"))["delivered"].as_u64()
    };
    assert_eq!(count().await, Some(0));
    let sent = form(&http, &dev, "/_dev/start", &[("email", "count@example.com")]).await;
    assert_eq!(sent.status, 303, "{}", sent.text);
    let page = mailbox_with(&http, &dev, "count@example.com").await;
    assert!(page.text.contains("data-delivered=\"1\""), "{}", page.text);
    assert_eq!(count().await, Some(1));
    // A bad address is refused on the page, as the API refuses it.
    let refused = form(&http, &dev, "/_dev/start", &[("email", "not an address")]).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("invalid_email"), "{}", refused.text);
}

/// `passgate dev` from a subfolder uses the project's `.passgate/` (same
/// key, same data) and says where it is; a first run says it made one.
#[tokio::test]
async fn dev_from_a_subfolder_finds_the_projects_dev_folder() {
    let dir = temp_dir();
    let mut first = Running::spawn(&["dev"], &[], &dir).await;
    let key = dev_key(&first).await;
    let folder = first.wait_for_line("Folder:").await;
    assert!(folder.contains(&format!("{} (created now)", dir.join(".passgate").display())), "{folder}");
    assert!(first.stop().await.success());

    let deeper = dir.join("web/src");
    std::fs::create_dir_all(&deeper).unwrap_or_else(|e| panic!("{e}"));
    let mut second = Running::spawn(&["dev"], &[], &deeper).await;
    assert_eq!(dev_key(&second).await, key, "another secret: another dev folder");
    let folder = second.wait_for_line("Folder:").await;
    assert!(
        folder.contains(&format!("{} (found above the current folder)", dir.join(".passgate").display())),
        "{folder}"
    );
    assert!(!deeper.join(".passgate").exists(), "a second dev folder was made");
    assert!(second.stop().await.success());
}

/// `--reset-limits` starts the dev project's send limits from zero and
/// keeps its key.
#[tokio::test]
async fn dev_reset_limits_clears_the_send_counters_and_keeps_the_key() {
    let dir = temp_dir();
    let mut dev = Running::spawn(&["dev"], &[], &dir).await;
    let key = dev_key(&dev).await;
    let http = reqwest::Client::new();
    let start = |base: String, key: String| {
        let http = http.clone();
        async move {
            Reply::of(
                http.post(format!("{base}/api/v2/auth/start"))
                    .bearer_auth(key)
                    .json(&json!({ "email": "ada@example.com", "validationUrl": format!("{base}/_dev/callback") }))
                    .send()
                    .await,
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_eq!(start(dev.base.clone(), key.clone()).await.status, 202);
    }
    start(dev.base.clone(), key.clone()).await.assert_problem(429, "rate_limited");
    assert!(dev.stop().await.success());

    // A restart alone keeps the limits.
    let mut plain = Running::spawn(&["dev"], &[], &dir).await;
    start(plain.base.clone(), key.clone()).await.assert_problem(429, "rate_limited");
    assert!(plain.stop().await.success());

    let reset = Running::spawn(&["dev", "--reset-limits"], &[], &dir).await;
    assert_eq!(dev_key(&reset).await, key, "the key changed");
    let limits = reset.wait_for_line("Limits:").await;
    assert!(limits.contains("reset (5 earlier sign-in attempts forgotten)"), "{limits}");
    assert_eq!(start(reset.base.clone(), key.clone()).await.status, 202);
}

/// The README's OTP walkthrough in dev mode: a code sent with the dev key
/// shows in the mailbox with its copy button (and no link, since it has
/// none), and verifies with the dev key.
#[tokio::test]
async fn a_one_time_code_shows_in_the_mailbox_and_verifies() {
    let dir = temp_dir();
    let dev = Running::spawn(&["dev"], &[], &dir).await;
    let key = dev_key(&dev).await;
    let http = browser();
    let sent = Reply::of(
        http.post(format!("{}/api/v2/otp/send", dev.base))
            .bearer_auth(&key)
            .json(&json!({ "email": "ada@example.com" }))
            .send()
            .await,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let mailbox = mailbox_with(&http, &dev, "ada@example.com").await;
    assert!(!mailbox.text.contains("Open the link") && !mailbox.text.contains("Copy link"), "{}", mailbox.text);
    let code = attribute_after(&mailbox.text, "code <code>").split('<').next().unwrap_or_default().to_string();
    remember_secret(&code);
    assert_eq!(code.len(), 6, "{}", mailbox.text);
    assert!(mailbox.text.contains(&format!("data-copy=\"{code}\" data-label=\"Copy code\"")), "copy code");
    let verified = Reply::of(
        http.post(format!("{}/api/v2/otp/verify", dev.base))
            .bearer_auth(&key)
            .json(&json!({ "otpId": sent.str("otpId"), "code": code }))
            .send()
            .await,
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["user"]["email"], "ada@example.com");
}
