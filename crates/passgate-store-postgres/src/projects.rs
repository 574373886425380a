//! `Projects` for PostgreSQL: projects, their settings and their API keys
//! (the keys' lookups served from memory, see `key_cache.rs`; every change
//! to a key or a project is announced to every instance by a trigger,
//! migration 0005).

use std::time::Instant;

use passgate_core::{ApiKeyId, ProjectId, Timestamp};
use passgate_store::shared::{from_json, hash32, to_json};
use passgate_store::{
    ApiKeyInfo, AuthenticatedKey, NewApiKey, NewProject, Project, ProjectSettings, Projects, StoreError, StoreResult,
};

use sqlx::PgConnection;

use crate::{PgStore, db_err};

/// Takes the project's row lock until the transaction ends: the writes
/// whose limits or idempotency must see every other such write of the
/// project (starts, invites, webhook endpoints), from any instance, take
/// turns on it. NO KEY UPDATE, not UPDATE: it excludes those writes but not
/// the KEY SHARE locks that every foreign-key check on the project takes
/// (a verify's event insert would otherwise wait for the lock's whole
/// transaction). `NotFound` if there is no such project.
pub(crate) async fn lock_project(tx: &mut PgConnection, project_id: &ProjectId) -> StoreResult<()> {
    sqlx::query!("SELECT id FROM projects WHERE id = $1 FOR NO KEY UPDATE", project_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
    Ok(())
}

pub(crate) struct ProjectRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) app_name: Option<String>,
    pub(crate) redirect_urls: String,
    pub(crate) allowed_domains: String,
    pub(crate) allowed_emails: String,
    pub(crate) link_ttl_seconds: i64,
    pub(crate) emails_per_minute: i64,
    pub(crate) is_dev: bool,
    pub(crate) created_at: i64,
    pub(crate) emails_per_recipient: i64,
    pub(crate) starts_per_ip: i64,
    pub(crate) otp_sends_per_email: i64,
    pub(crate) event_retention_seconds: i64,
}

impl ProjectRow {
    pub(crate) fn into_project(self) -> StoreResult<Project> {
        Ok(Project {
            id: ProjectId::from_trusted(self.id),
            settings: ProjectSettings {
                name: self.name,
                app_name: self.app_name,
                redirect_urls: from_json(&self.redirect_urls)?,
                allowed_domains: from_json(&self.allowed_domains)?,
                allowed_emails: from_json(&self.allowed_emails)?,
                link_ttl_seconds: self.link_ttl_seconds,
                emails_per_minute: self.emails_per_minute,
                emails_per_recipient: self.emails_per_recipient,
                starts_per_ip: self.starts_per_ip,
                otp_sends_per_email: self.otp_sends_per_email,
                event_retention_seconds: self.event_retention_seconds,
            },
            is_dev: self.is_dev,
            created_at: Timestamp(self.created_at),
        })
    }
}

impl PgStore {
    /// An API key and its project, from the database (see
    /// [`Projects::find_api_key`] for the cache in front).
    async fn read_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<AuthenticatedKey>> {
        let hash = &key_hash[..];
        let Some(r) = sqlx::query!(
            r#"SELECT k.id AS "key_id!", k.key_hash, k.revoked_at,
                p.id AS "id!", p.name, p.app_name, p.redirect_urls, p.allowed_domains, p.allowed_emails,
                p.link_ttl_seconds, p.emails_per_minute, p.is_dev, p.created_at,
                p.emails_per_recipient, p.starts_per_ip, p.otp_sends_per_email, p.event_retention_seconds
             FROM api_keys k JOIN projects p ON p.id = k.project_id
             WHERE k.key_hash = $1"#,
            hash
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        let project = ProjectRow {
            id: r.id,
            name: r.name,
            app_name: r.app_name,
            redirect_urls: r.redirect_urls,
            allowed_domains: r.allowed_domains,
            allowed_emails: r.allowed_emails,
            link_ttl_seconds: r.link_ttl_seconds,
            emails_per_minute: r.emails_per_minute,
            is_dev: r.is_dev,
            created_at: r.created_at,
            emails_per_recipient: r.emails_per_recipient,
            starts_per_ip: r.starts_per_ip,
            otp_sends_per_email: r.otp_sends_per_email,
            event_retention_seconds: r.event_retention_seconds,
        }
        .into_project()?;
        Ok(Some(AuthenticatedKey {
            key_id: ApiKeyId::from_trusted(r.key_id),
            key_hash: hash32(r.key_hash)?,
            revoked_at: r.revoked_at.map(Timestamp),
            project,
        }))
    }
}

/// Adds a key; says whether it was added (not when its id exists already:
/// dev mode re-creates its project and key at every start).
async fn insert_api_key(tx: &mut PgConnection, key: &NewApiKey) -> StoreResult<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
        key.id.as_str(),
        key.project_id.as_str(),
        &key.key_hash[..],
        key.hint,
        key.created_at.millis()
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(inserted == 1)
}

impl Projects for PgStore {
    async fn create_project(&self, project: NewProject, first_key: NewApiKey, if_absent: bool) -> StoreResult<()> {
        let s = &project.settings;
        let (redirects, domains, emails) =
            (to_json(&s.redirect_urls)?, to_json(&s.allowed_domains)?, to_json(&s.allowed_emails)?);
        let mut tx = self.begin().await?;
        let created_at = project.created_at.millis();
        let inserted = sqlx::query!(
            "INSERT INTO projects (id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at,
                emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING",
            project.id.as_str(),
            s.name,
            s.app_name,
            redirects,
            domains,
            emails,
            s.link_ttl_seconds,
            s.emails_per_minute,
            project.is_dev,
            created_at,
            s.emails_per_recipient,
            s.starts_per_ip,
            s.otp_sends_per_email,
            s.event_retention_seconds
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if inserted == 0 && !if_absent {
            return Err(StoreError::Conflict(format!("project {} exists", project.id)));
        }
        insert_api_key(&mut tx, &first_key).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_project(&self, id: &ProjectId, s: ProjectSettings) -> StoreResult<Project> {
        let (redirects, domains, emails) =
            (to_json(&s.redirect_urls)?, to_json(&s.allowed_domains)?, to_json(&s.allowed_emails)?);
        let mut tx = self.begin().await?;
        let row = sqlx::query_as!(
            ProjectRow,
            "UPDATE projects SET name = $1, app_name = $2, redirect_urls = $3, allowed_domains = $4,
                allowed_emails = $5, link_ttl_seconds = $6, emails_per_minute = $7,
                emails_per_recipient = $8, starts_per_ip = $9, otp_sends_per_email = $10,
                event_retention_seconds = $11
             WHERE id = $12
             RETURNING id AS \"id!\", name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at,
                emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds",
            s.name,
            s.app_name,
            redirects,
            domains,
            emails,
            s.link_ttl_seconds,
            s.emails_per_minute,
            s.emails_per_recipient,
            s.starts_per_ip,
            s.otp_sends_per_email,
            s.event_retention_seconds,
            id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(db_err)?;
        // Other instances hear of it from the trigger; this one need not wait.
        self.keys.invalidate();
        row.into_project()
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        sqlx::query_as!(
            ProjectRow,
            r#"SELECT id AS "id!", name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at,
                emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds
             FROM projects WHERE id = $1"#,
            id.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(ProjectRow::into_project)
        .transpose()
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        sqlx::query_as!(
            ProjectRow,
            r#"SELECT id AS "id!", name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at,
                emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds
             FROM projects ORDER BY created_at, id"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(ProjectRow::into_project)
        .collect()
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query!("SELECT id FROM projects WHERE id = $1", key.project_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        if !insert_api_key(&mut tx, &key).await? {
            return Err(StoreError::Conflict(format!("key {} exists", key.id)));
        }
        tx.commit().await.map_err(db_err)
    }

    async fn list_api_keys(&self, project_id: &ProjectId) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", project_id, hint, created_at, revoked_at
             FROM api_keys WHERE project_id = $1 ORDER BY created_at, id"#,
            project_id.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| ApiKeyInfo {
                id: ApiKeyId::from_trusted(r.id),
                project_id: ProjectId::from_trusted(r.project_id),
                hint: r.hint,
                created_at: Timestamp(r.created_at),
                revoked_at: r.revoked_at.map(Timestamp),
            })
            .collect())
    }

    async fn revoke_api_key(&self, key_id: &ApiKeyId, now: Timestamp) -> StoreResult<()> {
        let at = now.millis();
        let found = sqlx::query!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
            at,
            key_id.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        // Other instances hear of it from the trigger; this one need not wait.
        self.keys.invalidate();
        if found == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<AuthenticatedKey>> {
        if let Some(cached) = self.keys.get(key_hash) {
            return Ok(Some(cached));
        }
        self.keys.start_listener();
        let ticket = self.keys.ticket();
        let read_at = Instant::now();
        let found = self.read_api_key(key_hash).await?;
        if let Some(key) = &found {
            self.keys.insert(ticket, *key_hash, key, read_at);
        }
        Ok(found)
    }
}
