//! axum building blocks for an app backend that signs its users in with
//! passgate.
//!
//! - [`Sessions`]: server-side sessions in a `__Host-` cookie (`Secure;
//!   HttpOnly; SameSite=Lax; Path=/`, no `Domain`), the id 256 bits from
//!   the OS CSPRNG and stored only as its SHA-256, a new id at every login,
//!   and logout or "sign out everywhere" effective on the next request;
//!   stores for SQLite ([`SqliteSessionStore`]) and PostgreSQL
//!   ([`PostgresSessionStore`]) behind the [`SessionStore`] trait.
//! - [`LinkLogin`]: the scanner-safe magic-link callback. The start keeps
//!   a PKCE verifier in a cookie; the callback's GET only renders a
//!   "Continue signing in" page, and only that page's POST, CSRF-checked,
//!   verifies; the landing sends `Referrer-Policy: no-referrer` and
//!   redirects to a URL without the token. A link opened in another browser
//!   gets a page that points to the emailed code, not a dead end.
//! - [`Policy`]: hooks run before a start (allowed domains, allowlists) and
//!   after a verify (roles for the session, first-login onboarding).
//! - [`OrgAccess`] and [`OrgJson`]: an authorization guard that refuses
//!   (403) any request for an organization the signed-in user is not a
//!   member of, whatever organization id its path, query or body carries,
//!   checked against passgate on every request (never a lookup result).
//!
//! The pieces meet in an [`Auth`], which an app keeps in its router state.

mod auth;
mod cookie;
mod csrf;
mod guard;
mod link;
mod pages;
mod policy;
mod session;
#[cfg(feature = "postgres")]
mod store_postgres;
#[cfg(feature = "sqlite")]
mod store_sqlite;

pub use auth::{Auth, AuthConfig, LoginError, SignedIn, SignedInNow};
pub use cookie::{CookieJar, SetCookie};
pub use csrf::Csrf;
pub use guard::{Membership, OrgAccess, OrgJson};
pub use link::{LinkLogin, LinkStart};
pub use pages::{escape_html, protect_page};
pub use policy::{Policy, Refusal, VerifiedUser};
pub use session::{NewSession, SessionRecord, SessionStore, SessionStoreError, Sessions};
#[cfg(feature = "postgres")]
pub use store_postgres::PostgresSessionStore;
#[cfg(feature = "sqlite")]
pub use store_sqlite::SqliteSessionStore;

/// A boxed future, as [`SessionStore`]'s methods return (so the trait can
/// be used as `dyn SessionStore`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
