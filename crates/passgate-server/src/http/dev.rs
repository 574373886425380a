//! Dev mode only: `/_dev/mailbox`, every email the server sent, newest
//! first, with clickable links (the route does not exist outside dev mode),
//! and the rule that a dev server answers only requests addressed to
//! loopback names.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use passgate_api_types::ErrorCode;
use passgate_store::Store;

use super::error::ApiError;
use crate::app::App;

/// Whether a `Host` header names this machine's loopback: `localhost`,
/// `127.0.0.1` or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map(|(inside, _)| inside),
        None => Some(host.rsplit_once(':').map_or(host, |(name, _)| name)),
    };
    matches!(name.map(str::to_ascii_lowercase).as_deref(), Some("localhost" | "127.0.0.1" | "::1"))
}

/// Middleware of dev mode: a request whose `Host` is not a loopback name is
/// refused (421). A dev server listens on loopback only, but a web page can
/// still reach it through DNS rebinding (a name of the attacker's that
/// resolves to 127.0.0.1) and read live links from the mailbox; such a
/// request carries the attacker's name as its `Host`.
pub async fn only_loopback_hosts(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::MisdirectedRequest,
            "a dev server answers only requests for localhost, 127.0.0.1 or [::1]",
        )
        .into_response()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_local() {
        for local in
            ["localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:8080"]
        {
            assert!(is_loopback_host(local), "{local}");
        }
        for other in
            ["", "evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.2:8080", "[::2]:80", "::1"]
        {
            assert!(!is_loopback_host(other), "{other}");
        }
    }
}
