//! The few pages the SDK itself renders: plain HTML, no scripts, no
//! external resources, and nothing that could leak a token onwards.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and attribute values.
///
/// ```
/// assert_eq!(passgate_client::axum::escape_html(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body` (already escaped HTML), sent with headers
/// that keep it out of caches and its URL out of `Referer` headers.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}\
         button{{font-size:1rem;padding:.5rem 1rem}}input{{font-size:1rem;padding:.4rem}}</style></head>\
         <body><main>{body}</main></body></html>",
        title = escape_html(title),
    );
    let mut response = (status, Html(html)).into_response();
    protect_page(
        &mut response,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
    response
}

/// The headers every sign-in page should carry: `Referrer-Policy:
/// no-referrer` (a page's URL may hold a token), `Cache-Control: no-store`,
/// no framing (`X-Frame-Options`, and `frame-ancestors` in the policy),
/// and `content_security_policy`.
///
/// ```
/// let mut page = axum::response::IntoResponse::into_response("hello");
/// passgate_client::axum::protect_page(&mut page, "default-src 'none'; frame-ancestors 'none'");
/// assert_eq!(page.headers()["referrer-policy"], "no-referrer");
/// ```
pub fn protect_page(response: &mut Response, content_security_policy: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(content_security_policy));
}

/// The callback's GET: a button that posts the token. Opening the link
/// (what a scanner does) changes nothing.
pub(crate) fn interstitial(token: &str, csrf: &str, other_device: bool) -> Response {
    let warning = if other_device {
        "<p id=\"other-device\"><strong>This link was opened in a different browser from the one where you asked to \
         sign in.</strong> For your safety it works only there. Go back to that page and type the code from the \
         same email instead. (If you were invited, continue here.)</p>"
    } else {
        ""
    };
    page(
        StatusCode::OK,
        "Continue signing in",
        &format!(
            "<h1>Continue signing in</h1>{warning}\
             <form method=\"post\" action=\"/auth/callback\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"continue\">Continue signing in</button></form>",
            token = escape_html(token),
            csrf = escape_html(csrf),
        ),
    )
}

/// A sign-in that did not work, and the way back.
pub(crate) fn failure(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sign-in failed",
        &format!(
            "<h1>Sign-in failed</h1><p id=\"error\">{}</p><p><a href=\"/\">Start again</a></p>",
            escape_html(message)
        ),
    )
}
