//! The JWT signing keys as the server uses them: the current signer and the
//! public keys to publish, loaded from the store (private keys unsealed with
//! the server secret) and refreshed every few seconds, so a
//! `passgate signing-key rotate` run beside live servers reaches all of them.
//!
//! A retired key stays published for [`PUBLISH_RETIRED_FOR_SECONDS`]: longer
//! than a JWT lives (5 minutes) plus the refresh interval, during which a
//! server may still sign with it, so every token ever issued stays
//! verifiable until it expires.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use passgate_core::Timestamp;
use passgate_core::jwt::{JwtSigner, kid_for};
use passgate_core::secret::{Purpose, ServerSecret};
use passgate_store::{SigningKeyRecord, Store, StoreError};

pub const PUBLISH_RETIRED_FOR_SECONDS: i64 = 60 * 60;
/// How often the ring rereads the keys (a rotation reaches every instance within this).
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no current signing key in the database (`passgate serve` creates one at start; `passgate signing-key rotate` makes a new one)"
    )]
    NoCurrentKey,
    #[error(
        "the stored signing key {0} cannot be opened with PASSGATE_SECRET_KEY: start with the secret the database was \
         created with (or, while rotating to a new one, set the old one as PASSGATE_SECRET_KEY_PREVIOUS)"
    )]
    CannotOpen(String),
}

/// A freshly generated key, sealed for storage.
pub fn new_record(secret: &ServerSecret, now: Timestamp) -> SigningKeyRecord {
    let signer = JwtSigner::generate();
    SigningKeyRecord {
        kid: signer.kid().to_string(),
        public_key: signer.public_key().to_vec(),
        private_key_sealed: secret.seal(Purpose::SigningKey, &signer.secret_bytes()[..]),
        created_at: now,
        retired_at: None,
    }
}

/// Makes sure a current signing key exists (first start, or several
/// instances racing at their first start: one insert wins).
pub async fn ensure_signing_key<S: Store>(store: &S, secret: &ServerSecret, now: Timestamp) -> Result<(), KeyError> {
    let has_current = store.signing_keys().await?.iter().any(|k| k.retired_at.is_none());
    if !has_current {
        store.insert_first_signing_key(new_record(secret, now)).await?;
    }
    Ok(())
}

/// Whether the secret opens the current signing key (a start refuses to go
/// on otherwise).
pub async fn check_current_key_opens<S: Store>(store: &S, secret: &ServerSecret) -> Result<(), KeyError> {
    open_current(&store.signing_keys().await?, secret).map(drop)
}

/// The current key among `records`, unsealed.
fn open_current(records: &[SigningKeyRecord], secret: &ServerSecret) -> Result<JwtSigner, KeyError> {
    let current = records.iter().find(|k| k.retired_at.is_none()).ok_or(KeyError::NoCurrentKey)?;
    let cannot_open = || KeyError::CannotOpen(current.kid.clone());
    let seed = secret.open(Purpose::SigningKey, &current.private_key_sealed).map_err(|_| cannot_open())?;
    JwtSigner::from_secret_bytes(&seed).map_err(|_| cannot_open())
}

struct Loaded {
    signer: Arc<JwtSigner>,
    published: Vec<(String, [u8; 32])>,
    at: Instant,
}

/// The cached key ring.
pub struct KeyRing {
    loaded: RwLock<Option<Arc<Loaded>>>,
    refresh_every: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

impl Default for KeyRing {
    fn default() -> Self {
        Self::refreshing_every(REFRESH_EVERY)
    }
}

impl KeyRing {
    pub fn refreshing_every(refresh_every: Duration) -> Self {
        Self { loaded: RwLock::new(None), refresh_every }
    }

    async fn load<S: Store>(store: &S, secret: &ServerSecret, now: Timestamp) -> Result<Loaded, KeyError> {
        let records = store.signing_keys().await?;
        let signer = open_current(&records, secret)?;
        let published = records
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| r.plus_seconds(PUBLISH_RETIRED_FOR_SECONDS) > now))
            .filter_map(|k| {
                let public: [u8; 32] = k.public_key.as_slice().try_into().ok()?;
                // A row whose kid does not match its key is corrupt: skip it.
                (kid_for(&public) == k.kid).then(|| (k.kid.clone(), public))
            })
            .collect();
        Ok(Loaded { signer: Arc::new(signer), published, at: Instant::now() })
    }

    async fn current<S: Store>(
        &self,
        store: &S,
        secret: &ServerSecret,
        now: Timestamp,
    ) -> Result<Arc<Loaded>, KeyError> {
        let cached = self.loaded.read().ok().and_then(|l| l.clone());
        if let Some(loaded) = cached.filter(|l| l.at.elapsed() < self.refresh_every) {
            return Ok(loaded);
        }
        let fresh = Arc::new(Self::load(store, secret, now).await?);
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }

    pub async fn signer<S: Store>(
        &self,
        store: &S,
        secret: &ServerSecret,
        now: Timestamp,
    ) -> Result<Arc<JwtSigner>, KeyError> {
        Ok(self.current(store, secret, now).await?.signer.clone())
    }

    pub async fn published<S: Store>(
        &self,
        store: &S,
        secret: &ServerSecret,
        now: Timestamp,
    ) -> Result<Vec<(String, [u8; 32])>, KeyError> {
        Ok(self.current(store, secret, now).await?.published.clone())
    }
}
