//! Policy hooks: what the app decides before a login starts and after it
//! is verified. passgate enforces a project's own allowed domains and
//! allowlist too; these hooks are the app's, for rules passgate cannot
//! know (roles, onboarding, a customer's plan).

use std::sync::Arc;

use crate::jwt::Claims;

/// A refusal by a policy hook, with the message the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(
    /// The message for the user.
    pub String,
);

/// A verified sign-in, as the after-verify hooks see it: the JWT's claims,
/// checked, and whether passgate created the user just now.
#[derive(Debug, Clone)]
pub struct VerifiedUser {
    /// passgate's user id (`usr_…`).
    pub user_id: String,
    /// The canonical address passgate verified.
    pub email: String,
    /// The first sign-in of this user in the project.
    pub is_new_user: bool,
    /// `email_link` or `email_otp`.
    pub method: String,
    /// The result JWT's claims, verified.
    pub claims: Claims,
}

type StartHook = Arc<dyn Fn(&str) -> Result<(), Refusal> + Send + Sync>;
type VerifyHook = Arc<dyn Fn(&VerifiedUser) -> Result<Vec<String>, Refusal> + Send + Sync>;

/// The app's rules, run before `start` and after `verify`.
///
/// ```
/// use passgate_client::axum::{Policy, Refusal};
///
/// let policy = Policy::new()
///     .allow_domains(["example.com"])
///     .allow_emails(["contractor@elsewhere.example"])
///     .roles(|user| Ok(if user.email.starts_with("admin@") { vec!["admin".into()] } else { vec![] }))
///     .onboarding("/onboarding");
/// assert!(policy.check_start("Ada@Example.com").is_ok());
/// assert_eq!(policy.check_start("eve@evil.example"), Err(Refusal("This address may not sign in here.".into())));
/// ```
#[derive(Clone)]
pub struct Policy {
    allowed_domains: Vec<String>,
    allowed_emails: Vec<String>,
    before_start: Vec<StartHook>,
    after_verify: Vec<VerifyHook>,
    home: String,
    onboarding: Option<String>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("allowed_domains", &self.allowed_domains)
            .field("allowed_emails", &self.allowed_emails.len())
            .field("home", &self.home)
            .field("onboarding", &self.onboarding)
            .finish_non_exhaustive()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

const NOT_ALLOWED: &str = "This address may not sign in here.";

impl Policy {
    /// Everyone may sign in; sessions land on `/dashboard`.
    pub fn new() -> Self {
        Self {
            allowed_domains: vec![],
            allowed_emails: vec![],
            before_start: vec![],
            after_verify: vec![],
            home: "/dashboard".into(),
            onboarding: None,
        }
    }

    /// Only addresses at these domains (or in [`Policy::allow_emails`]) may sign in.
    pub fn allow_domains<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, domains: I) -> Self {
        self.allowed_domains.extend(domains.into_iter().map(|d| d.as_ref().trim().to_ascii_lowercase()));
        self
    }

    /// Only these addresses (or those at [`Policy::allow_domains`]) may sign in.
    pub fn allow_emails<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, emails: I) -> Self {
        self.allowed_emails.extend(emails.into_iter().map(|e| normalise(e.as_ref())));
        self
    }

    /// A rule run before a login starts, with the address as typed.
    pub fn before_start(mut self, hook: impl Fn(&str) -> Result<(), Refusal> + Send + Sync + 'static) -> Self {
        self.before_start.push(Arc::new(hook));
        self
    }

    /// A rule run after a verify: may refuse the sign-in, or return roles
    /// to attach to the session (every hook's roles are kept).
    pub fn roles(
        mut self,
        hook: impl Fn(&VerifiedUser) -> Result<Vec<String>, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.after_verify.push(Arc::new(hook));
        self
    }

    /// Where a signed-in user lands (default `/dashboard`).
    pub fn home(mut self, path: &str) -> Self {
        self.home = path.into();
        self
    }

    /// Where a user lands after their first sign-in (`isNewUser`).
    pub fn onboarding(mut self, path: &str) -> Self {
        self.onboarding = Some(path.into());
        self
    }

    /// Before `start`: the allowed domains and addresses, then the hooks.
    pub fn check_start(&self, email: &str) -> Result<(), Refusal> {
        if !self.admits(&normalise(email)) {
            return Err(Refusal(NOT_ALLOWED.into()));
        }
        self.before_start.iter().try_for_each(|hook| hook(email))
    }

    /// After `verify`: the same address rules on the canonical address
    /// passgate verified, then the hooks; the roles for the session.
    pub fn check_verified(&self, user: &VerifiedUser) -> Result<Vec<String>, Refusal> {
        if !self.admits(&normalise(&user.email)) {
            return Err(Refusal(NOT_ALLOWED.into()));
        }
        let mut roles = Vec::new();
        for hook in &self.after_verify {
            for role in hook(user)? {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
        Ok(roles)
    }

    /// Where the user goes once signed in.
    pub fn landing(&self, user: &VerifiedUser) -> &str {
        match (&self.onboarding, user.is_new_user) {
            (Some(onboarding), true) => onboarding,
            _ => &self.home,
        }
    }

    /// Where a signed-in user's home is.
    pub fn home_path(&self) -> &str {
        &self.home
    }

    fn admits(&self, email: &str) -> bool {
        if self.allowed_domains.is_empty() && self.allowed_emails.is_empty() {
            return true;
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        self.allowed_emails.iter().any(|e| e == email) || self.allowed_domains.iter().any(|d| d == domain)
    }
}

fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, new: bool) -> VerifiedUser {
        VerifiedUser {
            user_id: "usr_1".into(),
            email: email.into(),
            is_new_user: new,
            method: "email_link".into(),
            claims: Claims {
                iss: "i".into(),
                aud: "a".into(),
                sub: "usr_1".into(),
                email: email.into(),
                email_verified: true,
                amr: vec!["email_link".into()],
                iat: 0,
                exp: 0,
                nbf: None,
                jti: "j".into(),
            },
        }
    }

    #[test]
    fn domains_and_allowlists_admit_only_their_addresses() {
        let open = Policy::new();
        assert!(open.check_start("anyone@anywhere.example").is_ok());
        let policy = Policy::new().allow_domains(["Example.com"]).allow_emails(["Guest@Other.example"]);
        assert!(policy.check_start(" ada@EXAMPLE.com ").is_ok());
        assert!(policy.check_start("guest@other.example").is_ok());
        for refused in ["eve@evil.example", "ada@example.com.evil.example", "ada@sub.example.com", "no-at-sign"] {
            assert!(policy.check_start(refused).is_err(), "{refused}");
        }
        assert!(policy.check_verified(&user("eve@evil.example", false)).is_err());
    }

    #[test]
    fn hooks_refuse_attach_roles_and_pick_the_landing() {
        let policy = Policy::new()
            .before_start(|email| if email.contains('+') { Err(Refusal("no aliases".into())) } else { Ok(()) })
            .roles(|u| Ok(if u.email.starts_with("admin@") { vec!["admin".into()] } else { vec!["member".into()] }))
            .roles(|_| Ok(vec!["member".into()]))
            .roles(|u| if u.email.starts_with("banned@") { Err(Refusal("banned".into())) } else { Ok(vec![]) })
            .onboarding("/onboarding");
        assert_eq!(policy.check_start("a+b@x.example"), Err(Refusal("no aliases".into())));
        assert_eq!(policy.check_verified(&user("admin@x.example", false)), Ok(vec!["admin".into(), "member".into()]));
        assert_eq!(policy.check_verified(&user("ada@x.example", false)), Ok(vec!["member".into()]));
        assert_eq!(policy.check_verified(&user("banned@x.example", false)), Err(Refusal("banned".into())));
        assert_eq!(policy.landing(&user("ada@x.example", true)), "/onboarding");
        assert_eq!(policy.landing(&user("ada@x.example", false)), "/dashboard");
        assert_eq!(Policy::new().landing(&user("ada@x.example", true)), "/dashboard");
    }
}
