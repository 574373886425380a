//! `Projects` for SQLite: projects, their settings and their API keys (the
//! keys' lookups served from memory, see `key_cache.rs`).

use passgate_core::{ApiKeyId, ProjectId, Timestamp};
use passgate_store::shared::{from_json, hash32, to_json};
use passgate_store::{
    ApiKeyInfo, AuthenticatedKey, NewApiKey, NewProject, Project, ProjectSettings, Projects, StoreError, StoreResult,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{OrStoreError, SqliteStore};

/// The columns `project_from_row` reads, in its order.
macro_rules! project_columns {
    () => {
        "p.id, p.name, p.app_name, p.redirect_urls, p.allowed_domains, p.allowed_emails,
         p.link_ttl_seconds, p.emails_per_minute, p.is_dev, p.created_at,
         p.emails_per_recipient, p.starts_per_ip, p.otp_sends_per_email, p.event_retention_seconds"
    };
}

/// Reads a project from `row`, starting at column `at`.
fn project_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<StoreResult<Project>> {
    let list = |i: usize| -> rusqlite::Result<StoreResult<Vec<String>>> {
        let text: String = row.get(at + i)?;
        Ok(from_json(&text))
    };
    let (redirect_urls, allowed_domains, allowed_emails) = (list(3)?, list(4)?, list(5)?);
    let build = || -> StoreResult<Project> {
        Ok(Project {
            id: ProjectId::from_trusted(row.get::<_, String>(at).db()?),
            settings: ProjectSettings {
                name: row.get(at + 1).db()?,
                app_name: row.get(at + 2).db()?,
                redirect_urls: redirect_urls?,
                allowed_domains: allowed_domains?,
                allowed_emails: allowed_emails?,
                link_ttl_seconds: row.get(at + 6).db()?,
                emails_per_minute: row.get(at + 7).db()?,
                emails_per_recipient: row.get(at + 10).db()?,
                starts_per_ip: row.get(at + 11).db()?,
                otp_sends_per_email: row.get(at + 12).db()?,
                event_retention_seconds: row.get(at + 13).db()?,
            },
            is_dev: row.get::<_, i64>(at + 8).db()? != 0,
            created_at: Timestamp(row.get(at + 9).db()?),
        })
    };
    Ok(build())
}

/// A project's list settings as stored, in their columns' order.
fn list_columns(s: &ProjectSettings) -> StoreResult<(String, String, String)> {
    Ok((to_json(&s.redirect_urls)?, to_json(&s.allowed_domains)?, to_json(&s.allowed_emails)?))
}

/// Adds a key; says whether it was added (not when its id exists already:
/// dev mode re-creates its project and key at every start).
fn insert_api_key(conn: &Connection, key: &NewApiKey) -> StoreResult<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .db()?
        .execute(params![
            key.id.as_str(),
            key.project_id.as_str(),
            &key.key_hash[..],
            key.hint,
            key.created_at.millis()
        ])
        .db()?;
    Ok(inserted == 1)
}

impl Projects for SqliteStore {
    async fn create_project(&self, project: NewProject, first_key: NewApiKey, if_absent: bool) -> StoreResult<()> {
        let (redirects, domains, emails) = list_columns(&project.settings)?;
        self.write(move |conn| {
            let s = &project.settings;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO projects (id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                        link_ttl_seconds, emails_per_minute, is_dev, created_at,
                        emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                )
                .db()?
                .execute(params![
                    project.id.as_str(),
                    s.name,
                    s.app_name,
                    redirects,
                    domains,
                    emails,
                    s.link_ttl_seconds,
                    s.emails_per_minute,
                    project.is_dev,
                    project.created_at.millis(),
                    s.emails_per_recipient,
                    s.starts_per_ip,
                    s.otp_sends_per_email,
                    s.event_retention_seconds
                ])
                .db()?;
            if inserted == 0 && !if_absent {
                return Err(StoreError::Conflict(format!("project {} exists", project.id)));
            }
            insert_api_key(conn, &first_key)?;
            Ok(())
        })
        .await
    }

    async fn update_project(&self, id: &ProjectId, s: ProjectSettings) -> StoreResult<Project> {
        let id = id.clone();
        let (redirects, domains, emails) = list_columns(&s)?;
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE projects SET name = ?, app_name = ?, redirect_urls = ?, allowed_domains = ?,
                    allowed_emails = ?, link_ttl_seconds = ?, emails_per_minute = ?,
                    emails_per_recipient = ?, starts_per_ip = ?, otp_sends_per_email = ?,
                    event_retention_seconds = ?
                 WHERE id = ?
                 RETURNING id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                    link_ttl_seconds, emails_per_minute, is_dev, created_at,
                    emails_per_recipient, starts_per_ip, otp_sends_per_email, event_retention_seconds",
            )
            .db()?
            .query_row(
                params![
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
                ],
                |r| project_from_row(r, 0),
            )
            .optional()
            .db()?
            .ok_or(StoreError::NotFound)?
        })
        .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        self.read(|conn| {
            conn.prepare_cached(concat!("SELECT ", project_columns!(), " FROM projects p WHERE p.id = ?"))
                .db()?
                .query_row([id.as_str()], |r| project_from_row(r, 0))
                .optional()
                .db()?
                .transpose()
        })
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(concat!("SELECT ", project_columns!(), " FROM projects p ORDER BY p.created_at, p.id"))
                .db()?;
            let rows = statement.query_map([], |r| project_from_row(r, 0)).db()?;
            rows.map(|row| row.db()?).collect()
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<()> {
        self.write(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM projects WHERE id = ?")
                .db()?
                .exists([key.project_id.as_str()])
                .db()?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            if !insert_api_key(conn, &key)? {
                return Err(StoreError::Conflict(format!("key {} exists", key.id)));
            }
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self, project_id: &ProjectId) -> StoreResult<Vec<ApiKeyInfo>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, project_id, hint, created_at, revoked_at
                     FROM api_keys WHERE project_id = ? ORDER BY created_at, id",
                )
                .db()?;
            let rows = statement
                .query_map([project_id.as_str()], |r| {
                    Ok(ApiKeyInfo {
                        id: ApiKeyId::from_trusted(r.get::<_, String>(0)?),
                        project_id: ProjectId::from_trusted(r.get::<_, String>(1)?),
                        hint: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                        revoked_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<_>>().db()
        })
    }

    async fn revoke_api_key(&self, key_id: &ApiKeyId, now: Timestamp) -> StoreResult<()> {
        let key_id = key_id.clone();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .db()?
                .execute(params![now.millis(), key_id.as_str()])
                .db()?;
            if found == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
        .await
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<AuthenticatedKey>> {
        self.read(|conn| {
            // Read before the key: see `key_cache` for why the order matters.
            let generation: i64 = conn
                .prepare_cached("SELECT n FROM key_generation WHERE id = 1")
                .db()?
                .query_row([], |r| r.get(0))
                .db()?;
            if let Some(cached) = self.keys.get(generation, key_hash) {
                return Ok(Some(cached));
            }
            let found = conn
                .prepare_cached(concat!(
                    "SELECT k.id, k.key_hash, k.revoked_at, ",
                    project_columns!(),
                    " FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.key_hash = ?"
                ))
                .db()?
                .query_row([&key_hash[..]], |r| {
                    let key: (String, Vec<u8>, Option<i64>) = (r.get(0)?, r.get(1)?, r.get(2)?);
                    Ok((key, project_from_row(r, 3)?))
                })
                .optional()
                .db()?;
            let Some(((key_id, stored_hash, revoked_at), project)) = found else {
                return Ok(None);
            };
            let key = AuthenticatedKey {
                key_id: ApiKeyId::from_trusted(key_id),
                key_hash: hash32(stored_hash)?,
                revoked_at: revoked_at.map(Timestamp),
                project: project?,
            };
            self.keys.insert(generation, *key_hash, &key);
            Ok(Some(key))
        })
    }
}
