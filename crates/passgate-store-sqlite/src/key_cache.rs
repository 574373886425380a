//! API keys (with their projects) kept in memory between requests.
//!
//! Every API request looks its key up; on SQLite that was a join, a row of
//! a dozen columns and the project's JSON settings parsed again, each time.
//! Now a request reads one integer instead: `key_generation.n`, which
//! triggers move on with every change to any key or project (migration
//! 0004), whichever process made it. While it stands where it stood when a
//! key was read, that key and its project are unchanged; once it moves, the
//! whole cache is dropped.
//!
//! Why it is exact: a lookup reads the generation *before* the key. A change
//! committed between the two reads leaves the entry tagged with the older
//! generation, so the next request, seeing the newer one, reads the key
//! again. A revocation thus applies from the next request, as without the
//! cache. Unknown keys are never kept (a key created later needs no signal),
//! and the cache is bounded.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use passgate_store::AuthenticatedKey;

/// The cache is emptied when it would grow past this many keys.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The generation every entry was read at (or after).
    generation: i64,
    entries: HashMap<[u8; 32], AuthenticatedKey>,
}

impl KeyCache {
    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key, if it was read at the current `generation`.
    pub(crate) fn get(&self, generation: i64, key_hash: &[u8; 32]) -> Option<AuthenticatedKey> {
        let mut state = self.state();
        if state.generation != generation {
            state.entries.clear();
            state.generation = generation;
            return None;
        }
        state.entries.get(key_hash).cloned()
    }

    /// Keeps a key read after `generation` was; ignored if the cache has
    /// seen another generation since.
    pub(crate) fn insert(&self, generation: i64, key_hash: [u8; 32], key: &AuthenticatedKey) {
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert(key_hash, key.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use passgate_core::Timestamp;
    use passgate_store::{Project, ProjectSettings};

    fn key(name: &str) -> AuthenticatedKey {
        AuthenticatedKey {
            key_id: passgate_core::ApiKeyId::from_trusted(format!("key_{name}")),
            key_hash: [7; 32],
            revoked_at: None,
            project: Project {
                id: passgate_core::ProjectId::from_trusted("prj_1"),
                settings: ProjectSettings {
                    name: name.into(),
                    app_name: None,
                    redirect_urls: vec![],
                    allowed_domains: vec![],
                    allowed_emails: vec![],
                    link_ttl_seconds: 900,
                    emails_per_minute: 600,
                    emails_per_recipient: 5,
                    starts_per_ip: 30,
                    otp_sends_per_email: 3,
                    event_retention_seconds: 0,
                },
                is_dev: false,
                created_at: Timestamp(0),
            },
        }
    }

    #[test]
    fn entries_live_exactly_as_long_as_their_generation() {
        let cache = KeyCache::default();
        let hash = [1; 32];
        assert!(cache.get(0, &hash).is_none());
        cache.insert(0, hash, &key("a"));
        assert_eq!(cache.get(0, &hash).map(|k| k.project.settings.name), Some("a".into()));
        // Something changed: everything read before is gone.
        assert!(cache.get(1, &hash).is_none());
        assert!(cache.get(1, &hash).is_none());
        // A read that began before the change must not come back in.
        cache.insert(0, hash, &key("stale"));
        assert!(cache.get(1, &hash).is_none());
        cache.insert(1, hash, &key("b"));
        assert_eq!(cache.get(1, &hash).map(|k| k.project.settings.name), Some("b".into()));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = KeyCache::default();
        for i in 0..=MAX_ENTRIES {
            let mut hash = [0; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(0, hash, &key("k"));
        }
        assert!(cache.state().entries.len() <= MAX_ENTRIES);
    }
}
