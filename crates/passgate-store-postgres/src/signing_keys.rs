//! `SigningKeys` for PostgreSQL.

use passgate_core::Timestamp;
use passgate_store::{SigningKeyRecord, SigningKeys, StoreResult};

use crate::{PgStore, db_err};

impl SigningKeys for PgStore {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query!(
            r#"SELECT kid AS "kid!", public_key, private_key_sealed, created_at, retired_at
             FROM signing_keys ORDER BY created_at DESC, kid"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| SigningKeyRecord {
                kid: r.kid,
                public_key: r.public_key,
                private_key_sealed: r.private_key_sealed,
                created_at: Timestamp(r.created_at),
                retired_at: r.retired_at.map(Timestamp),
            })
            .collect())
    }

    async fn insert_first_signing_key(&self, key: SigningKeyRecord) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let created_at = key.created_at.millis();
        let inserted = sqlx::query!(
            "INSERT INTO signing_keys (kid, public_key, private_key_sealed, created_at)
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)",
            key.kid,
            key.public_key,
            key.private_key_sealed,
            created_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(inserted == 1)
    }

    async fn rotate_signing_key(&self, key: SigningKeyRecord, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let at = now.millis();
        sqlx::query!("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL", at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query!(
            "INSERT INTO signing_keys (kid, public_key, private_key_sealed, created_at) VALUES ($1, $2, $3, $4)",
            key.kid,
            key.public_key,
            key.private_key_sealed,
            at
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
