//! The emails as rendered from the built-in templates, pinned as
//! snapshots (`cargo insta review` to accept a change). The link and code
//! are fixed stand-ins, so nothing needs redacting.

use passgate_server::mail::EmailPayload;
use passgate_server::mail::templates::Templates;

fn payload(code: Option<&str>) -> EmailPayload {
    EmailPayload {
        template: "login".to_string(),
        project_id: "prj_snapshot".to_string(),
        to: "ada@example.com".to_string(),
        app_name: "Acme <App> & Co".to_string(),
        link:
            "https://app.example.com/auth/callback?next=%2Fhome&token=TOKENtokenTOKENtokenTOKENtokenTOKENtokenTOKENtok"
                .to_string(),
        code: code.map(str::to_string),
        expires_minutes: 15,
        locale: None,
        ..EmailPayload::default()
    }
}

fn render(payload: &EmailPayload) -> String {
    let templates = Templates::load(None).unwrap_or_else(|e| panic!("{e}"));
    let email = templates.render(payload).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "To: {}\nSubject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
        email.to, email.subject, email.text, email.html
    )
}

#[test]
fn the_login_email() {
    insta::assert_snapshot!("login", render(&payload(None)));
}

#[test]
fn the_login_email_with_a_code() {
    insta::assert_snapshot!("login_with_code", render(&payload(Some("042917"))));
}

#[test]
fn the_invite_email() {
    let invite = EmailPayload {
        template: "invite".to_string(),
        invited_by: Some("Grace Hopper".to_string()),
        organization: Some("Research & Development".to_string()),
        expires_minutes: 7 * 24 * 60,
        ..payload(None)
    };
    insta::assert_snapshot!("invite", render(&invite));
}
