//! `SigningKeys` for SQLite.

use passgate_core::Timestamp;
use passgate_store::{SigningKeyRecord, SigningKeys, StoreResult};
use rusqlite::params;

use crate::{OrStoreError, SqliteStore};

impl SigningKeys for SqliteStore {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT kid, public_key, private_key_sealed, created_at, retired_at
                     FROM signing_keys ORDER BY created_at DESC, kid",
                )
                .db()?;
            let rows = statement
                .query_map([], |r| {
                    Ok(SigningKeyRecord {
                        kid: r.get(0)?,
                        public_key: r.get(1)?,
                        private_key_sealed: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                        retired_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<_>>().db()
        })
    }

    async fn insert_first_signing_key(&self, key: SigningKeyRecord) -> StoreResult<bool> {
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO signing_keys (kid, public_key, private_key_sealed, created_at)
                     SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)",
                )
                .db()?
                .execute(params![key.kid, key.public_key, key.private_key_sealed, key.created_at.millis()])
                .db()?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn rotate_signing_key(&self, key: SigningKeyRecord, now: Timestamp) -> StoreResult<()> {
        self.write(move |conn| {
            let at = now.millis();
            conn.prepare_cached("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
                .db()?
                .execute([at])
                .db()?;
            conn.prepare_cached(
                "INSERT INTO signing_keys (kid, public_key, private_key_sealed, created_at) VALUES (?, ?, ?, ?)",
            )
            .db()?
            .execute(params![key.kid, key.public_key, key.private_key_sealed, at])
            .db()?;
            Ok(())
        })
        .await
    }
}
