//! The app's pages: plain HTML, each form with its CSRF token.

use axum::response::{Html, IntoResponse, Response};
use passgate_client::axum::{Membership, SessionRecord, escape_html as e, protect_page};
use passgate_client::types::OrganizationView;

/// A page around `body` (already escaped).
pub fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title} · proxy-app</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         button{{font-size:1rem;padding:.4rem .9rem;margin:.2rem 0}}input{{font-size:1rem;padding:.35rem}}\
         table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}\
         pre{{background:#f4f4f4;padding:.6rem;overflow:auto}}</style>\
         <script src=\"/static/app.js\" defer></script></head><body><main>{body}</main></body></html>",
        title = e(title)
    );
    let mut response = Html(html).into_response();
    protect_page(
        &mut response,
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
    response
}

pub fn sign_in(csrf: &str, message: Option<&str>) -> Response {
    let message = message.map(|m| format!("<p id=\"error\">{}</p>", e(m))).unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{message}\
             <form method=\"post\" action=\"/login/link\" id=\"sign-in\">\
             <p><label>Email <input type=\"email\" name=\"email\" id=\"email\" required autocomplete=\"email\"></label></p>\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"targetPublicKey\" id=\"target-public-key\" value=\"\">\
             <button type=\"submit\" id=\"email-link\">Email me a link</button> \
             <button type=\"submit\" id=\"email-code\" formaction=\"/login/code\">Email me a code</button>\
             </form>",
            csrf = e(csrf)
        ),
    )
}

pub fn check_email(csrf: &str, email: &str, message: Option<&str>) -> Response {
    let message = message.map(|m| format!("<p id=\"error\">{}</p>", e(m))).unwrap_or_default();
    page(
        "Check your email",
        &format!(
            "<h1>Check your email</h1>{message}\
             <p id=\"sent\">We sent a sign-in link to <strong>{email}</strong>. Open it in this browser, \
             or type the code from the same email here:</p>\
             <form method=\"post\" action=\"/login/link/code\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>Code <input name=\"code\" id=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label> \
             <button type=\"submit\" id=\"submit-code\">Sign in</button></form>",
            email = e(email),
            csrf = e(csrf)
        ),
    )
}

pub fn enter_code(csrf: &str, email: &str, otp_id: &str, with_key: bool) -> Response {
    let key_note = if with_key {
        "This browser holds a session key: after you sign in it opens the session credential and signs a request with it."
    } else {
        "This browser could not make a session key; signing in still works."
    };
    page(
        "Enter your code",
        &format!(
            "<h1>Enter your code</h1>\
             <p id=\"sent\">We sent a code to <strong>{email}</strong>.</p><p>{key_note}</p>\
             <form method=\"post\" action=\"/login/code/verify\" id=\"code-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"otpId\" value=\"{otp_id}\">\
             <label>Code <input name=\"code\" id=\"code\" autocomplete=\"one-time-code\" required></label> \
             <button type=\"submit\" id=\"submit-code\">Sign in</button></form>\
             <p id=\"status\" role=\"status\"></p><pre id=\"whoami\"></pre>\
             <p><a id=\"continue\" href=\"/dashboard\" hidden>Continue</a></p>",
            email = e(email),
            csrf = e(csrf),
            otp_id = e(otp_id)
        ),
    )
}

pub fn onboarding(session: &SessionRecord) -> Response {
    page(
        "Welcome",
        &format!(
            "<h1 id=\"welcome\">Welcome, {}</h1><p>This is your first sign-in.</p>\
             <p><a href=\"/dashboard\" id=\"to-dashboard\">Go to your dashboard</a></p>",
            e(&session.email)
        ),
    )
}

/// What the dashboard shows.
pub struct Dashboard<'a> {
    pub csrf: &'a str,
    pub session: &'a SessionRecord,
    pub sessions: &'a [SessionRecord],
    pub current_handle: &'a str,
    pub organizations: &'a [OrganizationView],
    pub selected: Option<(&'a Membership, &'a serde_json::Value)>,
}

pub fn dashboard(d: &Dashboard<'_>) -> Response {
    let csrf = e(d.csrf);
    let orgs = if d.organizations.is_empty() {
        "<p id=\"no-orgs\">You are not a member of any organization.</p>".to_string()
    } else {
        let items: String = d
            .organizations
            .iter()
            .map(|o| {
                let chosen = d.selected.is_some_and(|(m, _)| m.organization_id == o.id);
                format!(
                    "<li><a class=\"org\" href=\"/dashboard?org={id}\" data-org=\"{id}\">{name}</a>{mark}</li>",
                    id = e(&o.id),
                    name = e(&o.name),
                    mark = if chosen { " (selected)" } else { "" }
                )
            })
            .collect();
        format!("<ul id=\"orgs\">{items}</ul>")
    };
    let selected = d
        .selected
        .map(|(m, data)| {
            format!(
                "<h3>{id} <small>(your role: {role})</small></h3><pre id=\"org-data\">{data}</pre>",
                id = e(&m.organization_id),
                role = e(&m.role),
                data = e(&serde_json::to_string_pretty(data).unwrap_or_default())
            )
        })
        .unwrap_or_default();
    let rows: String = d
        .sessions
        .iter()
        .map(|s| {
            let this = s.handle == d.current_handle;
            let action = if this {
                "this session".to_string()
            } else {
                format!(
                    "<form method=\"post\" action=\"/sessions/{h}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <button type=\"submit\">Sign out</button></form>",
                    h = e(&s.handle)
                )
            };
            format!(
                "<tr class=\"session\"><td>{method}</td><td>{agent}</td><td>{action}</td></tr>",
                method = e(&s.method),
                agent = e(s.user_agent.as_deref().unwrap_or("unknown browser"))
            )
        })
        .collect();
    page(
        "Dashboard",
        &format!(
            "<h1>Dashboard</h1><p>Signed in as <strong id=\"user-email\">{email}</strong> \
             (<span id=\"user-id\">{user}</span>, by {method}{roles}).</p>\
             <h2>Organizations</h2>{orgs}{selected}\
             <h2>Sessions</h2><table id=\"sessions\"><tr><th>how</th><th>browser</th><th></th></tr>{rows}</table>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"logout\">Sign out</button></form>\
             <form method=\"post\" action=\"/sessions/revoke-all\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" id=\"revoke-all\">Sign out everywhere</button></form>",
            email = e(&d.session.email),
            user = e(&d.session.user_id),
            method = e(&d.session.method),
            roles = if d.session.roles.is_empty() {
                String::new()
            } else {
                format!(", roles: {}", e(&d.session.roles.join(", ")))
            },
        ),
    )
}
