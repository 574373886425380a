//! The dev pages' HTML: the mailbox, the stand-in callback's interstitial,
//! and what a sign-in came to. Everything shown is escaped; an email's HTML
//! part is shown in a sandboxed frame, where it can run nothing.

use passgate_api_types::Problem;
use passgate_core::Timestamp;

use crate::mail::transport::DevMail;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Turns `http(s)://…` runs in escaped text into links.
fn linkify(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    for (i, line) in escaped.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                if w.starts_with("http://") || w.starts_with("https://") {
                    format!("<a href=\"{w}\">{w}</a>")
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    out
}

/// The `token` query parameter of a sign-in link, if it has one.
pub fn token_of(link: &str) -> Option<String> {
    let url = url::Url::parse(link).ok()?;
    url.query_pairs().find(|(name, _)| name == "token").map(|(_, value)| value.into_owned())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;padding:0 1em;color:#222}\
article{border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}\
pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;padding:.75em;border-radius:6px}\
iframe{width:100%;height:420px;border:1px solid #eee;border-radius:6px;background:#fff}\
.meta{color:#666;font-size:.9em}.actions{display:flex;gap:.5em;flex-wrap:wrap;align-items:center}\
.button,button{font:inherit;padding:.35em .8em;border:1px solid #888;border-radius:6px;background:#f4f4f4;color:#222;text-decoration:none;cursor:pointer}\
.primary{background:#1f4fd1;border-color:#1f4fd1;color:#fff}.notice{background:#fff7d6;padding:.5em .75em;border-radius:6px}\
.error{background:#fde8e8;padding:.5em .75em;border-radius:6px}code{background:#f2f2f2;padding:0 .25em;border-radius:4px}";

/// A whole page. `script` runs under the response's CSP nonce.
pub fn page(title: &str, body: &str, script: Option<(&str, &str)>) -> String {
    let script = script.map_or_else(String::new, |(nonce, code)| format!("<script nonce=\"{nonce}\">{code}</script>"));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · passgate dev</title><style>{STYLE}</style></head><body>{body}{script}</body></html>",
        escape(title)
    )
}

/// What the mailbox page's script does: copy buttons, and a notice (never
/// a reload, which would clear a selection) when the mailbox changes.
pub const MAILBOX_SCRIPT: &str = "\
for (const b of document.querySelectorAll('button[data-copy]')) {\
  b.addEventListener('click', async () => {\
    try { await navigator.clipboard.writeText(b.dataset.copy); b.textContent = 'Copied'; }\
    catch { b.textContent = 'Copy failed: select the text instead'; }\
    setTimeout(() => { b.textContent = b.dataset.label; }, 1500);\
  });\
}\
const seen = document.getElementById('mailbox').dataset.delivered;\
setInterval(async () => {\
  try {\
    const r = await fetch('/_dev/mailbox/count', { cache: 'no-store' });\
    const { delivered } = await r.json();\
    if (String(delivered) !== seen) document.getElementById('changed').hidden = false;\
  } catch { document.getElementById('gone').hidden = false; }\
}, 3000);";

fn copy_button(label: &str, value: &str) -> String {
    format!("<button type=\"button\" data-copy=\"{}\" data-label=\"{label}\">{label}</button>", escape(value))
}

/// `/_dev/mailbox`: the emails since the server started, newest first.
pub fn mailbox(mails: &[DevMail], delivered: u64, started_at: Timestamp, callback: &str) -> String {
    let mut body = format!(
        "<h1>Dev mailbox</h1>\
         <p class=\"meta\">Every email this dev server sent since it started at {started}, newest first (the last {capacity}). \
         The mailbox is kept in memory: restarting <code>passgate dev</code> empties it, but links sent before a restart \
         still work until they expire.</p>\
         <p id=\"changed\" class=\"notice\" hidden>New emails arrived. <a href=\"/_dev/mailbox\">Show them</a></p>\
         <p id=\"gone\" class=\"notice\" hidden>The dev server stopped answering; emails will show here once it is back and you reload.</p>\
         <form method=\"post\" action=\"/_dev/start\" class=\"actions\">\
         <label>Send a sign-in email to <input type=\"email\" name=\"email\" required placeholder=\"ada@example.com\"></label>\
         <button class=\"primary\">Send</button></form>\
         <p class=\"meta\">Its link leads to <code>{callback}</code>, which finishes the sign-in in this browser. \
         Your own app's links go to its own callback.</p>",
        started = escape(&started_at.to_rfc3339()),
        capacity = crate::mail::transport::DevMailbox::CAPACITY,
        callback = escape(callback),
    );
    if mails.is_empty() {
        body.push_str("<p>No emails yet. Start a login or send a code and it will appear here.</p>");
    }
    for mail in mails {
        let email = &mail.email;
        // A one-time code's email has no link: only its code to copy.
        let mut actions = String::new();
        if !email.link.is_empty() {
            actions = format!("<a class=\"button primary\" href=\"{}\">Open the link</a>", escape(&email.link));
            actions.push_str(&copy_button("Copy link", &email.link));
        }
        if let Some(token) = token_of(&email.link) {
            actions.push_str(&copy_button("Copy token", &token));
        }
        if let Some(code) = &email.code {
            actions.push_str(&format!(" code <code>{}</code>", escape(code)));
            actions.push_str(&copy_button("Copy code", code));
        }
        // `<base target>` makes links in the frame open outside it; the
        // empty-ish sandbox runs no script and submits no form.
        let framed = format!("<base target=\"_blank\">{}", email.html);
        body.push_str(&format!(
            "<article><div class=\"meta\">{at} — to <strong>{to}</strong></div><h2>{subject}</h2>\
             <div class=\"actions\">{actions}</div>\
             <h3 class=\"meta\">HTML part, as sent</h3>\
             <iframe sandbox=\"allow-popups allow-popups-to-escape-sandbox\" title=\"HTML part\" srcdoc=\"{framed}\"></iframe>\
             <details><summary>Text part</summary><pre>{text}</pre></details></article>",
            at = escape(&mail.at.to_rfc3339()),
            to = escape(&email.to),
            subject = escape(&email.subject),
            framed = escape(&framed),
            text = linkify(&escape(&email.text)),
        ));
    }
    format!("<div id=\"mailbox\" data-delivered=\"{delivered}\" hidden></div>{body}")
}

/// `GET /_dev/callback`: what a link opens. It uses nothing: the sign-in
/// happens on the button's POST, as an app's callback should do it.
pub fn interstitial(token: &str, state: Option<&str>) -> String {
    let state = state.map_or_else(String::new, |s| format!("<p class=\"meta\">state: <code>{}</code></p>", escape(s)));
    format!(
        "<h1>Finish signing in</h1>\
         <p>This is passgate dev's stand-in for your app's callback. Opening the link used nothing: the link is \
         verified only when you press the button, so mail scanners that open links cannot use them up. \
         Your app's callback should work the same way (docs/integrate.md).</p>{state}\
         <form method=\"post\" action=\"/_dev/callback\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <details><summary>Started with a PKCE codeChallenge?</summary>\
         <p><label>codeVerifier <input name=\"code_verifier\" size=\"60\" autocomplete=\"off\"></label></p></details>\
         <p><button class=\"primary\">Sign in</button></p></form>\
         <p><a href=\"/_dev/mailbox\">Back to the mailbox</a></p>",
        token = escape(token),
    )
}

/// What a verify by the stand-in callback came to: the user and the JWT.
pub fn signed_in(email: &str, user_id: &str, is_new_user: bool, state: Option<&str>, jwt: &str, jwks: &str) -> String {
    let claims = jwt
        .split('.')
        .nth(1)
        .and_then(|part| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_default();
    let state = state.map_or_else(String::new, |s| format!("<li>state: <code>{}</code></li>", escape(s)));
    format!(
        "<h1>Signed in as {email}</h1><ul><li>user id: <code>{user_id}</code></li><li>new user: {new}</li>{state}</ul>\
         <p>The verify call returned this JWT (an app checks it against <a href=\"{jwks}\">{jwks}</a>: \
         algorithm EdDSA, <code>iss</code>, <code>aud</code>, <code>exp</code>). The link is now used.</p>\
         <pre>{jwt}</pre><h2>Its claims</h2><pre>{claims}</pre><p><a href=\"/_dev/mailbox\">Back to the mailbox</a></p>",
        email = escape(email),
        user_id = escape(user_id),
        new = if is_new_user { "yes" } else { "no" },
        jwt = escape(jwt),
        claims = escape(&claims),
        jwks = escape(jwks),
    )
}

/// A refusal, as the API would have answered it.
pub fn problem(what: &str, problem: &Problem) -> String {
    format!(
        "<h1>{what}</h1><p class=\"error\"><code>{code}</code> ({status} {title}): {detail}</p>\
         <p class=\"meta\">The API answers the same with a problem document; request id <code>{request_id}</code>.</p>\
         <p><a href=\"/_dev/mailbox\">Back to the mailbox</a></p>",
        what = escape(what),
        code = escape(&problem.code),
        status = problem.status,
        title = escape(&problem.title),
        detail = escape(&problem.detail),
        request_id = escape(&problem.request_id),
    )
}

/// A page for what the dev pages themselves refuse.
pub fn refusal(what: &str, why: &str) -> String {
    format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/_dev/mailbox\">Back to the mailbox</a></p>",
        escape(what),
        escape(why)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_links() {
        assert_eq!(token_of("http://localhost:8080/_dev/callback?token=abc&state=x").as_deref(), Some("abc"));
        assert_eq!(token_of("http://localhost:8080/_dev/callback?state=x"), None);
        assert_eq!(token_of("not a link"), None);
    }

    #[test]
    fn everything_shown_is_escaped() {
        let page = interstitial("\"><script>alert(1)</script>", Some("<b>"));
        assert!(!page.contains("<script>") && !page.contains("<b>"), "{page}");
        let refused = refusal("<i>", "<img src=x>");
        assert!(!refused.contains("<i>") && !refused.contains("<img"), "{refused}");
    }
}
