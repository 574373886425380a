//! API keys, with their project, kept in memory so that the two key lookups
//! of a login cost no round trip to PostgreSQL (they were half of all
//! statements on the hot path; see bench/NOTES.md).
//!
//! A key can be revoked, and its project changed, by another process (`passgate
//! key revoke`, `passgate project update`, another instance), so the cache is
//! only as good as the news it hears of such changes:
//!
//! - every change to an API key or a project sends a notification on
//!   [`CHANNEL`] (a trigger does, migration 0005, whatever statement made
//!   the change); PostgreSQL delivers it at commit, and every instance's
//!   listener empties its cache on it;
//! - the cache is used only while that listener is connected and listening.
//!   When its connection breaks, notifications may have been missed: the
//!   cache is emptied and bypassed until the listener is back;
//! - a connection can also die without a sound (no reset from a vanished
//!   peer), so no entry is used longer than [`MAX_AGE`] after it was read;
//! - a lookup that raced an emptying (it read the row before the change and
//!   would store it after) is not stored: every emptying starts a new
//!   generation, and an entry read in an earlier one is dropped.
//!
//! Unknown keys are never cached: a guess always costs a lookup, as before,
//! and cannot fill the memory. The listener starts with the first lookup, so
//! a CLI command that never authenticates a request opens no extra connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use passgate_store::AuthenticatedKey;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

/// The notification channel for changes to API keys and projects.
pub(crate) const CHANNEL: &str = "passgate_key_changes";

/// The longest an entry is used after it was read, whatever the listener
/// says: the bound on staleness if its connection dies silently.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);

/// Keys are created by operators, so a few are expected; past this many the
/// cache starts over rather than grow.
const MAX_ENTRIES: usize = 4096;

/// The listener's first wait before reconnecting after a failure, doubled
/// on each further failure up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The `application_name` of the listener's connection (operators see it
/// in `pg_stat_activity`; tests find it there to cut it).
pub const LISTENER_APPLICATION_NAME: &str = "passgate-key-cache";

#[derive(Debug)]
pub(crate) struct KeyCache {
    state: Mutex<State>,
    /// For the listener, which opens a connection of its own.
    options: PgConnectOptions,
    listener: Mutex<Listener>,
}

#[derive(Debug)]
enum Listener {
    NotStarted,
    Running(tokio::task::AbortHandle),
    /// The store was closed: the cache stays off.
    Stopped,
}

#[derive(Debug)]
struct State {
    /// True while the listener is connected and listening.
    live: bool,
    /// Changes on every emptying; see [`Ticket`].
    generation: u64,
    max_age: Duration,
    entries: HashMap<[u8; 32], Entry>,
}

#[derive(Debug)]
struct Entry {
    key: AuthenticatedKey,
    read_at: Instant,
}

/// Taken before reading a key from the database: the read may be stored only
/// if the cache was live then and nothing emptied it since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    live: bool,
}

impl KeyCache {
    pub(crate) fn new(options: PgConnectOptions) -> Self {
        Self {
            state: Mutex::new(State { live: false, generation: 0, max_age: MAX_AGE, entries: HashMap::new() }),
            options,
            listener: Mutex::new(Listener::NotStarted),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written
        // in a way that matters: at worst an entry is missing.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_max_age(&self, max_age: Duration) {
        let mut state = self.state();
        state.max_age = max_age;
        state.entries.clear();
    }

    /// The cached key, if the cache is live and the entry fresh.
    pub(crate) fn get(&self, key_hash: &[u8; 32]) -> Option<AuthenticatedKey> {
        let state = self.state();
        if !state.live {
            return None;
        }
        let entry = state.entries.get(key_hash)?;
        (entry.read_at.elapsed() < state.max_age).then(|| entry.key.clone())
    }

    pub(crate) fn ticket(&self) -> Ticket {
        let state = self.state();
        Ticket { generation: state.generation, live: state.live }
    }

    /// Stores a key read from the database after `ticket` was taken, unless
    /// the cache was emptied (or not live) in between.
    pub(crate) fn insert(&self, ticket: Ticket, key_hash: [u8; 32], key: &AuthenticatedKey, read_at: Instant) {
        let mut state = self.state();
        if !ticket.live || !state.live || ticket.generation != state.generation {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert(key_hash, Entry { key: key.clone(), read_at });
    }

    /// Forgets every entry; lookups in flight will not store what they read.
    pub(crate) fn invalidate(&self) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.clear();
    }

    fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.live = live;
        state.generation = state.generation.wrapping_add(1);
        state.entries.clear();
    }

    pub(crate) fn is_live(&self) -> bool {
        self.state().live
    }

    /// Starts the listener if it never ran. Called on a miss only: the
    /// cache cannot hit before the listener is live. Needs a Tokio runtime.
    pub(crate) fn start_listener(self: &Arc<Self>) {
        let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(*listener, Listener::NotStarted) {
            let task = tokio::spawn(listen(Arc::downgrade(self), self.options.clone()));
            *listener = Listener::Running(task.abort_handle());
        }
    }

    /// Stops the listener for good; the cache is bypassed from then on.
    pub(crate) fn stop_listener(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Listener::Running(task) = std::mem::replace(&mut *listener, Listener::Stopped) {
            task.abort();
        }
        drop(listener);
        self.set_live(false);
    }
}

/// Keeps a connection listening on [`CHANNEL`] for as long as the cache
/// exists, emptying it on every notification and every reconnection.
async fn listen(cache: Weak<KeyCache>, options: PgConnectOptions) {
    // A pool of its own, so the listener never takes one of the pool's
    // connections from the requests.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(RECONNECT_MAX)
        .connect_lazy_with(options.application_name(LISTENER_APPLICATION_NAME));
    let mut wait = RECONNECT_FIRST;
    loop {
        let failure = match subscribe(&pool).await {
            Ok(mut listener) => {
                let Some(alive) = cache.upgrade() else { return };
                alive.set_live(true);
                drop(alive);
                wait = RECONNECT_FIRST;
                loop {
                    let heard = listener.try_recv().await;
                    let Some(alive) = cache.upgrade() else { return };
                    match heard {
                        // A change, or a reconnection (sqlx re-subscribes
                        // before it returns `None`) after which whatever
                        // was sent meanwhile is lost: start over either way.
                        Ok(_) => alive.invalidate(),
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        let Some(alive) = cache.upgrade() else { return };
        alive.set_live(false);
        drop(alive);
        tracing::warn!(error = %failure, retry_in_ms = wait.as_millis() as u64,
            "API-key cache off: cannot listen for key changes on PostgreSQL; every request looks its key up");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

async fn subscribe(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
