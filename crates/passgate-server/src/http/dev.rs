//! Dev mode only: `/_dev/mailbox`, every email the server sent, newest
//! first, with clickable links. The route does not exist outside dev mode.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use passgate_store::Store;

use crate::app::App;

fn escape(s: &str) -> String {
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

pub async fn mailbox<S: Store>(State(app): State<App<S>>) -> impl IntoResponse {
    let mails = app.dev_mailbox.as_ref().map(|m| m.list()).unwrap_or_default();
    let mut body = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>passgate dev mailbox</title>\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <style>body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}\
         article{border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}\
         pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;padding:.75em;border-radius:6px}\
         .meta{color:#666;font-size:.9em}</style></head><body><h1>Dev mailbox</h1>\
         <p class=\"meta\">Every email passgate sent in this dev session, newest first. Refreshes every 5 seconds.</p>",
    );
    if mails.is_empty() {
        body.push_str("<p>No emails yet. Start a login and it will appear here.</p>");
    }
    for m in mails {
        body.push_str(&format!(
            "<article><div class=\"meta\">{} — to <strong>{}</strong></div><h2>{}</h2><pre>{}</pre></article>",
            escape(&m.at.to_rfc3339()),
            escape(&m.to),
            escape(&m.subject),
            linkify(&escape(&m.text)),
        ));
    }
    body.push_str("</body></html>");
    // The page holds live login links: keep it out of caches and referrers.
    ([(header::CACHE_CONTROL, "no-store"), (header::REFERRER_POLICY, "no-referrer")], Html(body))
}
