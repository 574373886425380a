//! Email templates (minijinja): built-in defaults, overridable by the
//! operator for every project or for one.
//!
//! Three sets: `login` (a sign-in link, and its code), `invite`, and `otp`
//! (a one-time code). With
//! `templates_dir` set, files found there replace the built-ins:
//! `<dir>/<set>.subject.txt`, `<dir>/<set>.txt`, `<dir>/<set>.html` for all
//! projects, and `<dir>/<project id>/<set>.*` for one project. Each file is
//! optional; what is missing falls back to the next level. Templates are
//! loaded and compiled once at start, so a broken override stops the server
//! at start rather than failing emails later. HTML templates auto-escape.

use std::path::Path;

use minijinja::Environment;

use super::{EmailPayload, RenderedEmail};

const PARTS: [&str; 3] = ["subject.txt", "txt", "html"];
const TEMPLATE_SETS: [&str; 3] = ["login", "invite", "otp"];

fn builtin(set: &str, part: &str) -> Option<&'static str> {
    match (set, part) {
        ("login", "subject.txt") => Some(include_str!("../../templates/login.subject.txt")),
        ("login", "txt") => Some(include_str!("../../templates/login.txt")),
        ("login", "html") => Some(include_str!("../../templates/login.html")),
        ("invite", "subject.txt") => Some(include_str!("../../templates/invite.subject.txt")),
        ("invite", "txt") => Some(include_str!("../../templates/invite.txt")),
        ("invite", "html") => Some(include_str!("../../templates/invite.html")),
        ("otp", "subject.txt") => Some(include_str!("../../templates/otp.subject.txt")),
        ("otp", "txt") => Some(include_str!("../../templates/otp.txt")),
        ("otp", "html") => Some(include_str!("../../templates/otp.html")),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("template {name} does not compile: {source}")]
    Compile { name: String, source: minijinja::Error },
    #[error("template {name} failed to render: {source}")]
    Render { name: String, source: minijinja::Error },
    #[error("unknown template set {0}")]
    Unknown(String),
}

pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

fn name(scope: &str, set: &str, part: &str) -> String {
    format!("{scope}/{set}.{part}")
}

impl Templates {
    /// Compiles the built-ins and every override found under `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // `.html` names auto-escape; subjects and text do not.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // minijinja's HTML escaping also turns `/` into `&#x2f;`, which mangles
        // links for mail clients and link scanners alike; escape exactly the
        // five characters that matter in HTML text and attribute values.
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() {
                let text = value.to_string();
                let escaped = text
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#39;");
                out.write_str(&escaped).map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let add = |env: &mut Environment<'static>, name: String, source: String| {
            env.add_template_owned(name.clone(), source).map_err(|source| TemplateError::Compile { name, source })
        };
        for set in TEMPLATE_SETS {
            for part in PARTS {
                let source = builtin(set, part).unwrap_or_default();
                add(&mut env, name("builtin", set, part), source.to_string())?;
            }
        }
        if let Some(dir) = dir {
            let read_dir = |d: &Path| {
                std::fs::read_dir(d).map_err(|source| TemplateError::Read { path: d.display().to_string(), source })
            };
            let mut scopes = vec![("all".to_string(), dir.to_path_buf())];
            for entry in read_dir(dir)? {
                let entry = entry.map_err(|source| TemplateError::Read { path: dir.display().to_string(), source })?;
                let file_name = entry.file_name().to_string_lossy().to_string();
                if entry.path().is_dir() && file_name.starts_with("prj_") {
                    scopes.push((file_name, entry.path()));
                }
            }
            for (scope, path) in scopes {
                for set in TEMPLATE_SETS {
                    for part in PARTS {
                        let file = path.join(format!("{set}.{part}"));
                        if file.is_file() {
                            let source = std::fs::read_to_string(&file)
                                .map_err(|source| TemplateError::Read { path: file.display().to_string(), source })?;
                            add(&mut env, name(&scope, set, part), source)?;
                        }
                    }
                }
            }
        }
        Ok(Self { env })
    }

    fn pick(&self, project_id: &str, set: &str, part: &str) -> Result<minijinja::Template<'_, '_>, TemplateError> {
        [project_id, "all", "builtin"]
            .iter()
            .find_map(|scope| self.env.get_template(&name(scope, set, part)).ok())
            .ok_or_else(|| TemplateError::Unknown(set.to_string()))
    }

    /// Renders the subject, text and HTML of a queued email.
    pub fn render(&self, payload: &EmailPayload) -> Result<RenderedEmail, TemplateError> {
        let ctx = minijinja::context! {
            app_name => payload.app_name,
            email => payload.to,
            link => payload.link,
            code => payload.code,
            expires_minutes => payload.expires_minutes,
            expires_in => human_duration(payload.expires_minutes),
            locale => payload.locale,
            invited_by => payload.invited_by,
            organization => payload.organization,
        };
        let render = |part: &str| {
            let template = self.pick(&payload.project_id, &payload.template, part)?;
            template.render(&ctx).map_err(|source| TemplateError::Render { name: template.name().to_string(), source })
        };
        // A subject is one line: whatever a template does, never let a line
        // break reach the header.
        let subject = render("subject.txt")?.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(RenderedEmail {
            to: payload.to.clone(),
            subject,
            text: render("txt")?,
            html: render("html")?,
            link: payload.link.clone(),
            code: payload.code.clone(),
        })
    }
}

/// A lifetime in words, as an email says it: "15 minutes", "1 hour",
/// "7 days" (rounded up to the largest unit that fits whole).
pub fn human_duration(minutes: i64) -> String {
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match minutes {
        m if m >= 1440 && m % 1440 == 0 => plural(m / 1440, "day"),
        m if m >= 60 && m % 60 == 0 => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: Option<&str>) -> EmailPayload {
        EmailPayload {
            template: "login".into(),
            project_id: "prj_a".into(),
            to: "ada@example.com".into(),
            app_name: "Acme <Beta>".into(),
            link: "https://app.example.com/cb?a=1&token=ABC".into(),
            code: code.map(str::to_string),
            expires_minutes: 15,
            locale: None,
            ..EmailPayload::default()
        }
    }

    #[test]
    fn lifetimes_are_said_in_words() {
        assert_eq!(human_duration(1), "1 minute");
        assert_eq!(human_duration(15), "15 minutes");
        assert_eq!(human_duration(60), "1 hour");
        assert_eq!(human_duration(90), "90 minutes");
        assert_eq!(human_duration(1440), "1 day");
        assert_eq!(human_duration(10_080), "7 days");
        assert_eq!(human_duration(1500), "25 hours");
    }

    #[test]
    fn the_invite_names_who_invites_and_to_what() {
        let t = Templates::load(None).unwrap_or_else(|e| panic!("{e}"));
        let invite = EmailPayload {
            template: "invite".into(),
            invited_by: Some("Grace <Admin>".into()),
            organization: Some("Research & Dev".into()),
            expires_minutes: 10_080,
            ..payload(None)
        };
        let m = t.render(&invite).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.subject, "Grace <Admin> invited you to Research & Dev on Acme <Beta>");
        assert!(m.text.contains("Grace <Admin> invited you to join Research & Dev on Acme <Beta>."), "{}", m.text);
        assert!(m.text.contains("expires in 7 days"), "{}", m.text);
        assert!(m.html.contains("Grace &lt;Admin&gt; invited you") && m.html.contains("Research &amp; Dev"));
        let plain = EmailPayload { invited_by: None, organization: None, ..invite };
        let m = t.render(&plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.subject, "You are invited to Acme <Beta>");
    }

    #[test]
    fn builtins_name_the_app_and_show_link_and_code() {
        let t = Templates::load(None).unwrap_or_else(|e| panic!("{e}"));
        let m = t.render(&payload(Some("123456"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.subject, "Sign in to Acme <Beta>");
        assert!(m.text.contains("https://app.example.com/cb?a=1&token=ABC"));
        assert!(m.text.contains("\n123456\n"));
        assert!(m.text.contains("Acme <Beta>"));
        assert!(m.html.contains("Acme &lt;Beta&gt;"), "HTML escapes the app name");
        assert!(m.html.contains("https://app.example.com/cb?a=1&amp;token=ABC"));
        assert!(m.html.contains(">123456<"));
        let no_code = t.render(&payload(None)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!no_code.text.contains("code"));
    }

    #[test]
    fn overrides_apply_globally_then_per_project() {
        let dir =
            std::env::temp_dir().join(format!("passgate-templates-{}", passgate_core::ids::IdKind::Request.generate()));
        std::fs::create_dir_all(dir.join("prj_a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("login.subject.txt"), "Log in to {{ app_name }}\nBcc: evil@example.com")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("prj_a").join("login.txt"), "A: {{ link }}").unwrap_or_else(|e| panic!("{e}"));
        let t = Templates::load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        let a = t.render(&payload(None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.subject, "Log in to Acme <Beta> Bcc: evil@example.com", "one line, whatever the template");
        assert_eq!(a.text, "A: https://app.example.com/cb?a=1&token=ABC");
        let mut other = payload(None);
        other.project_id = "prj_b".into();
        let b = t.render(&other).unwrap_or_else(|e| panic!("{e}"));
        assert!(b.text.starts_with("Sign in to"), "other projects keep the built-in body");
        std::fs::write(dir.join("login.html"), "{% if %}").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(Templates::load(Some(&dir)), Err(TemplateError::Compile { .. })));
    }
}
