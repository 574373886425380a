//! The JWT signing keys: the current one, and retired ones still published
//! until the tokens they signed have expired.

use std::future::Future;

use passgate_core::Timestamp;

use crate::StoreResult;

#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub public_key: Vec<u8>,
    /// The private key sealed under the server secret.
    pub private_key_sealed: Vec<u8>,
    pub created_at: Timestamp,
    /// When it stopped being current; `None` for the current key.
    pub retired_at: Option<Timestamp>,
}

pub trait SigningKeys: Clone + Send + Sync + 'static {
    /// Every stored signing key, newest first.
    fn signing_keys(&self) -> impl Future<Output = StoreResult<Vec<SigningKeyRecord>>> + Send;

    /// Stores `key` as current if there is no current key yet; returns
    /// whether it was stored (several instances may race at first start).
    fn insert_first_signing_key(&self, key: SigningKeyRecord) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Retires the current key at `now` and makes `key` current.
    fn rotate_signing_key(&self, key: SigningKeyRecord, now: Timestamp)
    -> impl Future<Output = StoreResult<()>> + Send;
}
