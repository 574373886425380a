//! Server-side sessions (S22).
//!
//! The browser holds only a random id in a `__Host-` cookie; the store
//! holds only that id's SHA-256, so a leaked database (or backup) holds no
//! cookie that works. Every login makes a new id (and ends the session the
//! browser had, so a planted id never becomes a signed-in one); logout
//! deletes the row and "sign out everywhere" deletes every row of the user,
//! and since each request reads the store, both take effect on the next
//! request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::BoxFuture;
use super::cookie::{CookieJar, SetCookie};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-session";

/// A session as the store keeps it. Holds no secret: the id that the
/// cookie carries is not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// A public handle of the session (for a "your sessions" list and
    /// signing one out), unrelated to the cookie's id.
    pub handle: String,
    /// passgate's user id (`usr_…`).
    pub user_id: String,
    /// The user's canonical address.
    pub email: String,
    /// Roles the after-verify policy attached.
    pub roles: Vec<String>,
    /// How the user signed in: `email_link` or `email_otp`.
    pub method: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the session ends then whatever happens.
    pub expires_at: i64,
    /// The browser's user agent at login (≤ 256 characters).
    pub user_agent: Option<String>,
}

/// What a new session is made of.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// passgate's user id (`usr_…`).
    pub user_id: String,
    /// The user's canonical address.
    pub email: String,
    /// Roles to keep with the session.
    pub roles: Vec<String>,
    /// How the user signed in: `email_link` or `email_otp`.
    pub method: String,
    /// The browser's user agent (kept to 256 characters).
    pub user_agent: Option<String>,
}

/// A store failed (its database is down, say).
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct SessionStoreError(
    /// What failed, for logs (never a session id).
    pub String,
);

/// Where sessions live. Every method takes the SHA-256 of the session id,
/// never the id. Implementations: [`super::SqliteSessionStore`],
/// [`super::PostgresSessionStore`].
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session under `id_hash`.
    fn insert<'a>(
        &'a self,
        id_hash: [u8; 32],
        record: &'a SessionRecord,
    ) -> BoxFuture<'a, Result<(), SessionStoreError>>;
    /// The live session (`expires_at > now`) with this id hash.
    fn get(&self, id_hash: [u8; 32], now: i64) -> BoxFuture<'_, Result<Option<SessionRecord>, SessionStoreError>>;
    /// Deletes one session by id hash; whether there was one.
    fn remove(&self, id_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, SessionStoreError>>;
    /// Deletes the user's session with this handle; whether there was one.
    fn remove_handle<'a>(&'a self, user_id: &'a str, handle: &'a str)
    -> BoxFuture<'a, Result<bool, SessionStoreError>>;
    /// Deletes every session of the user; how many there were.
    fn remove_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<u64, SessionStoreError>>;
    /// The user's live sessions, newest first.
    fn list_user<'a>(
        &'a self,
        user_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionRecord>, SessionStoreError>>;
    /// Deletes sessions that expired at or before `now`; how many.
    fn remove_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, SessionStoreError>>;
}

/// Sessions over a store: makes, reads and ends them from request headers.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use passgate_client::axum::{NewSession, Sessions, SqliteSessionStore};
///
/// let sessions = Sessions::new(SqliteSessionStore::open_in_memory()?).ttl(Duration::from_secs(8 * 3600));
/// let (record, cookie) = sessions
///     .start(&Default::default(), NewSession {
///         user_id: "usr_1".into(),
///         email: "ada@example.com".into(),
///         roles: vec![],
///         method: "email_link".into(),
///         user_agent: None,
///     })
///     .await?;
/// assert!(cookie.to_string().starts_with("__Host-session="));
/// # let _ = record;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions in `store`, living 7 days unless [`Sessions::ttl`] says otherwise.
    pub fn new(store: impl SessionStore) -> Self {
        Self { store: Arc::new(store), ttl: Duration::from_secs(7 * 24 * 3600) }
    }

    /// Sessions in a store chosen at run time.
    pub fn from_shared(store: Arc<dyn SessionStore>) -> Self {
        Self { store, ttl: Duration::from_secs(7 * 24 * 3600) }
    }

    /// How long a session lives from its login.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Starts a session: a new id (256 bits from the OS CSPRNG), stored as
    /// its hash. The session the request's cookie named, if any, ends:
    /// an id is never reused across a login.
    pub async fn start(
        &self,
        request: &HeaderMap,
        new: NewSession,
    ) -> Result<(SessionRecord, SetCookie), SessionStoreError> {
        if let Some(old) = session_id(request) {
            self.store.remove(hash(&old)).await?;
        }
        let id = crate::random::token::<32>();
        let now = unix_now();
        let record = SessionRecord {
            handle: crate::random::token::<12>(),
            user_id: new.user_id,
            email: new.email,
            roles: new.roles,
            method: new.method,
            created_at: now,
            expires_at: now.saturating_add(self.ttl.as_secs() as i64),
            user_agent: new.user_agent.map(|ua| ua.chars().take(256).collect()),
        };
        self.store.insert(hash(&id), &record).await?;
        let cookie = SetCookie::new(SESSION_COOKIE, &id).max_age(self.ttl.as_secs() as i64);
        Ok((record, cookie))
    }

    /// The live session the request's cookie names, if any.
    pub async fn current(&self, request: &HeaderMap) -> Result<Option<SessionRecord>, SessionStoreError> {
        match session_id(request) {
            Some(id) => self.store.get(hash(&id), unix_now()).await,
            None => Ok(None),
        }
    }

    /// Ends the request's session; the cookie that removes it from the browser.
    pub async fn end(&self, request: &HeaderMap) -> Result<SetCookie, SessionStoreError> {
        if let Some(id) = session_id(request) {
            self.store.remove(hash(&id)).await?;
        }
        Ok(SetCookie::removal(SESSION_COOKIE))
    }

    /// Ends the user's session with this handle (from [`Sessions::list`]).
    pub async fn end_one(&self, user_id: &str, handle: &str) -> Result<bool, SessionStoreError> {
        self.store.remove_handle(user_id, handle).await
    }

    /// "Sign out everywhere": ends every session of the user.
    pub async fn end_everywhere(&self, user_id: &str) -> Result<u64, SessionStoreError> {
        self.store.remove_user(user_id).await
    }

    /// The user's live sessions, newest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, SessionStoreError> {
        self.store.list_user(user_id, unix_now()).await
    }

    /// Deletes expired sessions (run it now and then; reads ignore them anyway).
    pub async fn purge_expired(&self) -> Result<u64, SessionStoreError> {
        self.store.remove_expired(unix_now()).await
    }
}

/// The cookie's session id, when it has the shape of one.
fn session_id(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers).get(SESSION_COOKIE).filter(|id| id.len() == 43).map(str::to_string)
}

pub(crate) fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
