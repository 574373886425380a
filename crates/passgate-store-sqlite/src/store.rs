//! `Store` for SQLite: one method, one transaction (a part of the writer's
//! batch that commits all or nothing, see `writer.rs`). Statements are prepared once per
//! connection and cached.

use passgate_core::ids::IdKind;
use passgate_core::limits::{
    IDEMPOTENCY_WINDOW_SECONDS, MAX_CODE_FAILURES, MAX_VERIFIER_FAILURES, minute_bucket, project_minute_limited,
};
use passgate_core::{Timestamp, constant_time_eq};
use passgate_store::backend::{
    Consumed, DeliveryUpdate, NewEvent, closed_login, from_json, hash32, retry_after, to_json,
};
use passgate_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{SqliteStore, db_err};

/// Maps the driver's errors into the store's.
trait OrStoreError<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> OrStoreError<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(db_err)
    }
}

/// The columns `project_from_row` reads, in its order.
macro_rules! project_columns {
    () => {
        "p.id, p.name, p.app_name, p.redirect_urls, p.allowed_domains, p.allowed_emails,
         p.link_ttl_seconds, p.emails_per_minute, p.is_dev, p.created_at"
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
            id: row.get(at).db()?,
            settings: ProjectSettings {
                name: row.get(at + 1).db()?,
                app_name: row.get(at + 2).db()?,
                redirect_urls: redirect_urls?,
                allowed_domains: allowed_domains?,
                allowed_emails: allowed_emails?,
                link_ttl_seconds: row.get(at + 6).db()?,
                emails_per_minute: row.get(at + 7).db()?,
            },
            is_dev: row.get::<_, i64>(at + 8).db()? != 0,
            created_at: Timestamp(row.get(at + 9).db()?),
        })
    };
    Ok(build())
}

fn insert_event(conn: &Connection, e: NewEvent<'_>) -> StoreResult<()> {
    let id = IdKind::Event.generate();
    conn.prepare_cached(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        id,
        e.project_id,
        e.kind,
        e.user_id,
        e.login_id,
        e.email,
        e.reason,
        e.ip_address,
        e.user_agent,
        e.at.millis()
    ])
    .db()?;
    Ok(())
}

/// Finds the user of `email` in a project, creating them with `new_id`.
fn upsert_user(
    conn: &Connection,
    project_id: &str,
    email: &str,
    new_id: &str,
    now: Timestamp,
) -> StoreResult<(User, bool)> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users (id, project_id, email, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (project_id, email) DO NOTHING",
        )
        .db()?
        .execute(params![new_id, project_id, email, now.millis()])
        .db()?
        == 1;
    let (id, created_at): (String, i64) = conn
        .prepare_cached("SELECT id, created_at FROM users WHERE project_id = ? AND email = ?")
        .db()?
        .query_row(params![project_id, email], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?;
    let user =
        User { id, project_id: project_id.to_string(), email: email.to_string(), created_at: Timestamp(created_at) };
    Ok((user, inserted))
}

/// Why a login could not be consumed: it is gone, used, burned or expired —
/// or, when it is none of these, its PKCE challenge was not answered, which
/// counts as a failed attempt and may burn it.
fn classify_failure(
    conn: &Connection,
    login_id: &str,
    used_at: Option<i64>,
    burned_at: Option<i64>,
    expires_at: i64,
    now: Timestamp,
) -> StoreResult<VerifyFailure> {
    if let Some(closed) = closed_login(used_at, burned_at, expires_at, now) {
        return Ok(closed);
    }
    conn.prepare_cached(
        "UPDATE logins SET verifier_failures = verifier_failures + 1,
            burned_at = CASE WHEN verifier_failures + 1 >= ? THEN ? ELSE burned_at END
         WHERE id = ? AND used_at IS NULL AND burned_at IS NULL",
    )
    .db()?
    .execute(params![MAX_VERIFIER_FAILURES, now.millis(), login_id])
    .db()?;
    Ok(VerifyFailure::VerifierMismatch)
}

fn record_failure(
    conn: &Connection,
    project_id: &str,
    login_id: Option<&str>,
    failure: VerifyFailure,
    now: Timestamp,
) -> StoreResult<()> {
    let mut event = NewEvent::new(project_id, "auth.failed", now);
    event.login_id = login_id;
    event.reason = Some(failure.reason());
    insert_event(conn, event)
}

fn finish_verified(
    conn: &Connection,
    consumed: Consumed,
    new_user_id: &str,
    now: Timestamp,
) -> StoreResult<VerifyOutcome> {
    let Consumed { project_id, login_id, email, state, method } = consumed;
    let (user, is_new_user) = upsert_user(conn, &project_id, &email, new_user_id, now)?;
    let mut event = NewEvent::new(&project_id, "auth.verified", now);
    event.user_id = Some(&user.id);
    event.login_id = Some(&login_id);
    event.email = Some(&email);
    event.reason = Some(method.amr());
    insert_event(conn, event)?;
    Ok(VerifyOutcome::Verified(VerifiedLogin { login_id, user, is_new_user, state, method }))
}

/// The newest time of the `limit`-th most recent login matching a filter
/// inside a window: if there is one, the window is full, and it frees when
/// that login leaves it.
fn window_full(
    conn: &Connection,
    sql: &str,
    key: &str,
    project_id: &str,
    since: i64,
    limit: i64,
) -> StoreResult<Option<i64>> {
    conn.prepare_cached(sql).db()?.query_row(params![project_id, key, since, limit - 1], |r| r.get(0)).optional().db()
}

fn start_login(conn: &Connection, login: &NewLogin) -> StoreResult<StartOutcome> {
    let now = login.created_at;
    let now_ms = now.millis();

    if let Some(claim) = &login.idempotency {
        let since = now_ms - IDEMPOTENCY_WINDOW_SECONDS * 1000;
        let previous: Option<(Vec<u8>, i64, String)> = conn
            .prepare_cached(
                "SELECT fingerprint, response_status, response_body FROM idempotency_keys
                 WHERE project_id = ? AND key = ? AND created_at > ?",
            )
            .db()?
            .query_row(params![login.project_id, claim.key, since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .db()?;
        if let Some((fingerprint, status, body)) = previous {
            return Ok(if constant_time_eq(&fingerprint, &claim.fingerprint) {
                StartOutcome::Replayed { status: u16::try_from(status).unwrap_or(200), body }
            } else {
                StartOutcome::IdempotencyConflict
            });
        }
    }

    let limits = login.limits;
    let oldest = window_full(
        conn,
        "SELECT created_at FROM logins WHERE project_id = ? AND email = ? AND created_at > ?
         ORDER BY created_at DESC LIMIT 1 OFFSET ?",
        &login.email,
        &login.project_id,
        now_ms - limits.per_recipient_window_seconds * 1000,
        limits.per_recipient,
    )?;
    let mut limited =
        oldest.map(|oldest| (LimitKind::Recipient, retry_after(oldest, limits.per_recipient_window_seconds, now)));
    let minute = minute_bucket(now_ms);
    let previous_minute = minute - 1;
    let (mut current, mut previous) = (0, 0);
    {
        let mut counts = conn
            .prepare_cached("SELECT minute, sent FROM project_send_counts WHERE project_id = ? AND minute >= ?")
            .db()?;
        let mut rows = counts.query(params![login.project_id, previous_minute]).db()?;
        while let Some(row) = rows.next().db()? {
            let (m, sent): (i64, i64) = (row.get(0).db()?, row.get(1).db()?);
            if m == minute {
                current = sent;
            } else if m == previous_minute {
                previous = sent;
            }
        }
    }
    if limited.is_none() {
        limited = project_minute_limited(current, previous, now_ms, limits.per_project_per_minute)
            .map(|retry| (LimitKind::Project, retry));
    }
    if let (None, Some(ip)) = (limited, &login.ip_address) {
        let oldest = window_full(
            conn,
            "SELECT created_at FROM logins WHERE project_id = ? AND ip_address = ? AND created_at > ?
             ORDER BY created_at DESC LIMIT 1 OFFSET ?",
            ip,
            &login.project_id,
            now_ms - 60_000,
            limits.per_ip_per_minute,
        )?;
        limited = oldest.map(|oldest| (LimitKind::IpAddress, retry_after(oldest, 60, now)));
    }
    if let Some((limit, retry_after_seconds)) = limited {
        let mut event = NewEvent::new(&login.project_id, "rate_limited", now);
        event.email = Some(&login.email);
        event.reason = Some(limit.as_str());
        event.ip_address = login.ip_address.as_deref();
        event.user_agent = login.user_agent.as_deref();
        insert_event(conn, event)?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }

    conn.prepare_cached(
        "INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
            validation_url, ip_address, user_agent, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        login.id,
        login.project_id,
        login.email,
        &login.token_hash[..],
        login.code_hash.as_ref().map(|h| &h[..]),
        login.code_challenge,
        login.state,
        login.validation_url,
        login.ip_address,
        login.user_agent,
        now_ms,
        login.expires_at.millis()
    ])
    .db()?;
    conn.prepare_cached(
        "INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status, next_attempt_at,
            lease_owner, lease_until, created_at)
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        login.email_id,
        login.project_id,
        login.id,
        login.email,
        login.email_payload_sealed,
        now_ms,
        login.email_lease.as_ref().map(|l| &l.owner),
        login.email_lease.as_ref().map(|l| l.until.millis()),
        now_ms
    ])
    .db()?;
    conn.prepare_cached(
        "INSERT INTO project_send_counts (project_id, minute, sent) VALUES (?, ?, 1)
         ON CONFLICT (project_id, minute) DO UPDATE SET sent = sent + 1",
    )
    .db()?
    .execute(params![login.project_id, minute])
    .db()?;
    if current == 0 {
        // First send of a new minute: older counters are no longer needed.
        conn.prepare_cached("DELETE FROM project_send_counts WHERE project_id = ? AND minute < ?")
            .db()?
            .execute(params![login.project_id, previous_minute])
            .db()?;
    }
    if let Some(claim) = &login.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (project_id, key, fingerprint, response_status, response_body, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (project_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                response_status = excluded.response_status, response_body = excluded.response_body,
                created_at = excluded.created_at",
        )
        .db()?
        .execute(params![
            login.project_id,
            claim.key,
            &claim.fingerprint[..],
            i64::from(claim.response_status),
            claim.response_body,
            now_ms
        ])
        .db()?;
    }
    let mut event = NewEvent::new(&login.project_id, "auth.started", now);
    event.login_id = Some(&login.id);
    event.email = Some(&login.email);
    event.ip_address = login.ip_address.as_deref();
    event.user_agent = login.user_agent.as_deref();
    insert_event(conn, event)?;
    Ok(StartOutcome::Started)
}

fn verify_by_token(conn: &Connection, req: &VerifyByToken) -> StoreResult<VerifyOutcome> {
    let now_ms = req.now.millis();
    // The single-use guarantee: one conditional UPDATE.
    let consumed: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "UPDATE logins SET used_at = ?
             WHERE project_id = ? AND token_hash = ? AND used_at IS NULL AND burned_at IS NULL
               AND expires_at > ? AND (code_challenge IS NULL OR code_challenge = ?)
             RETURNING id, email, state",
        )
        .db()?
        .query_row(params![now_ms, req.project_id, &req.token_hash[..], now_ms, req.verifier_challenge], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .db()?;
    if let Some((login_id, email, state)) = consumed {
        let consumed =
            Consumed { project_id: req.project_id.clone(), login_id, email, state, method: AuthMethod::EmailLink };
        return finish_verified(conn, consumed, &req.new_user_id, req.now);
    }
    let row: Option<(String, Option<i64>, Option<i64>, i64)> = conn
        .prepare_cached("SELECT id, used_at, burned_at, expires_at FROM logins WHERE project_id = ? AND token_hash = ?")
        .db()?
        .query_row(params![req.project_id, &req.token_hash[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
        .db()?;
    let (failure, login_id) = match row {
        None => (VerifyFailure::Invalid, None),
        Some((id, used_at, burned_at, expires_at)) => {
            (classify_failure(conn, &id, used_at, burned_at, expires_at, req.now)?, Some(id))
        }
    };
    record_failure(conn, &req.project_id, login_id.as_deref(), failure, req.now)?;
    Ok(VerifyOutcome::Failed(failure))
}

/// A login as `verify_by_code` reads it.
struct CodeLogin {
    id: String,
    email: String,
    state: Option<String>,
    code_hash: Option<Vec<u8>>,
    code_challenge: Option<String>,
    used_at: Option<i64>,
    burned_at: Option<i64>,
    expires_at: i64,
}

fn verify_by_code(conn: &Connection, req: &VerifyByCode) -> StoreResult<VerifyOutcome> {
    let now_ms = req.now.millis();
    let row = conn
        .prepare_cached(
            "SELECT id, email, state, code_hash, code_challenge, used_at, burned_at, expires_at
             FROM logins WHERE project_id = ? AND id = ?",
        )
        .db()?
        .query_row(params![req.project_id, req.login_id], |r| {
            Ok(CodeLogin {
                id: r.get(0)?,
                email: r.get(1)?,
                state: r.get(2)?,
                code_hash: r.get(3)?,
                code_challenge: r.get(4)?,
                used_at: r.get(5)?,
                burned_at: r.get(6)?,
                expires_at: r.get(7)?,
            })
        })
        .optional()
        .db()?;
    let Some(row) = row else {
        record_failure(conn, &req.project_id, None, VerifyFailure::Invalid, req.now)?;
        return Ok(VerifyOutcome::Failed(VerifyFailure::Invalid));
    };
    let failure = closed_login(row.used_at, row.burned_at, row.expires_at, req.now);
    let failure = match (failure, &row.code_hash) {
        (Some(f), _) => Some(f),
        (None, None) => Some(VerifyFailure::CodeInvalid),
        (None, Some(stored)) => {
            // Compare against every candidate without stopping early.
            let matched =
                req.code_hash_candidates.iter().fold(false, |acc, candidate| acc | constant_time_eq(candidate, stored));
            if !matched {
                conn.prepare_cached(
                    "UPDATE logins SET code_failures = code_failures + 1,
                        burned_at = CASE WHEN code_failures + 1 >= ? THEN ? ELSE burned_at END
                     WHERE id = ? AND used_at IS NULL AND burned_at IS NULL",
                )
                .db()?
                .execute(params![MAX_CODE_FAILURES, now_ms, row.id])
                .db()?;
                Some(VerifyFailure::CodeInvalid)
            } else {
                let answered = match (&row.code_challenge, &req.verifier_challenge) {
                    (None, _) => true,
                    (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
                    (Some(_), None) => false,
                };
                if answered {
                    None
                } else {
                    Some(classify_failure(conn, &row.id, None, None, row.expires_at, req.now)?)
                }
            }
        }
    };
    if let Some(failure) = failure {
        record_failure(conn, &req.project_id, Some(&row.id), failure, req.now)?;
        return Ok(VerifyOutcome::Failed(failure));
    }
    // Still one conditional UPDATE decides who wins.
    let consumed = conn
        .prepare_cached(
            "UPDATE logins SET used_at = ?
             WHERE id = ? AND used_at IS NULL AND burned_at IS NULL AND expires_at > ?",
        )
        .db()?
        .execute(params![now_ms, row.id, now_ms])
        .db()?;
    if consumed == 0 {
        // Another verify won the race: report the login as it stands now.
        let used_at: Option<i64> = conn
            .prepare_cached("SELECT used_at FROM logins WHERE id = ?")
            .db()?
            .query_row([&row.id], |r| r.get(0))
            .optional()
            .db()?
            .flatten();
        let failure = used_at.map_or(VerifyFailure::Burned, |at| VerifyFailure::Used { used_at: Timestamp(at) });
        record_failure(conn, &req.project_id, Some(&row.id), failure, req.now)?;
        return Ok(VerifyOutcome::Failed(failure));
    }
    let consumed = Consumed {
        project_id: req.project_id.clone(),
        login_id: row.id,
        email: row.email,
        state: row.state,
        method: AuthMethod::EmailCode,
    };
    finish_verified(conn, consumed, &req.new_user_id, req.now)
}

fn claim_emails(conn: &Connection, lease: &Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
    let (now, until) = (lease.now.millis(), lease.until.millis());
    let mut statement = conn
        .prepare_cached(
            "UPDATE outbox SET lease_owner = ?, lease_until = ?
             WHERE id IN (
                SELECT id FROM outbox
                WHERE status IN ('queued', 'retrying') AND next_attempt_at <= ?
                  AND (lease_until IS NULL OR lease_until <= ?)
                ORDER BY next_attempt_at LIMIT ?)
             RETURNING id, project_id, login_id, recipient, payload_sealed, attempts",
        )
        .db()?;
    let rows = statement
        .query_map(params![lease.owner, until, now, now, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, Option<Vec<u8>>>(4)?, r.get(5)?))
        })
        .db()?;
    rows.map(|row| {
        let (id, project_id, login_id, recipient, payload_sealed, attempts) = row.db()?;
        Ok(ClaimedEmail {
            id,
            project_id,
            login_id,
            recipient,
            payload_sealed: payload_sealed.ok_or_else(|| StoreError::Corrupt("queued email without payload".into()))?,
            attempts,
        })
    })
    .collect()
}

fn record_delivery(conn: &Connection, email_id: &str, lease_owner: &str, result: &DeliveryResult) -> StoreResult<bool> {
    let update = DeliveryUpdate::of(result);
    let row: Option<(String, Option<String>, String)> = conn
        .prepare_cached(
            "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,
                next_attempt_at = COALESCE(?, next_attempt_at), settled_at = ?,
                payload_sealed = CASE WHEN ? IS NULL THEN payload_sealed END,
                lease_owner = NULL, lease_until = NULL
             WHERE id = ? AND lease_owner = ? AND status IN ('queued', 'retrying')
             RETURNING project_id, login_id, recipient",
        )
        .db()?
        .query_row(
            params![
                update.status,
                update.last_error,
                update.next_attempt_at,
                update.settled_at,
                update.settled_at,
                email_id,
                lease_owner
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .db()?;
    let Some((project_id, login_id, recipient)) = row else {
        return Ok(false);
    };
    if let Some((kind, reason)) = update.event {
        let mut e = NewEvent::new(&project_id, kind, update.at);
        e.login_id = login_id.as_deref();
        e.email = Some(&recipient);
        e.reason = reason;
        insert_event(conn, e)?;
    }
    Ok(true)
}

impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.writer.alone(crate::migrate::run).await
    }

    async fn close(&self) {
        Self::close(self).await;
    }

    async fn ready(&self) -> StoreResult<()> {
        self.read(crate::migrate::check_current)
    }

    async fn create_project(&self, project: NewProject, first_key: NewApiKey, if_absent: bool) -> StoreResult<()> {
        self.write(move |conn| {
            let s = &project.settings;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO projects (id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                        link_ttl_seconds, emails_per_minute, is_dev, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                )
                .db()?
                .execute(params![
                    project.id,
                    s.name,
                    s.app_name,
                    to_json(&s.redirect_urls),
                    to_json(&s.allowed_domains),
                    to_json(&s.allowed_emails),
                    s.link_ttl_seconds,
                    s.emails_per_minute,
                    project.is_dev,
                    project.created_at.millis()
                ])
                .db()?;
            if inserted == 0 && !if_absent {
                return Err(StoreError::Conflict(format!("project {} exists", project.id)));
            }
            conn.prepare_cached(
                "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .db()?
            .execute(params![
                first_key.id,
                first_key.project_id,
                &first_key.key_hash[..],
                first_key.hint,
                first_key.created_at.millis()
            ])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn update_project(&self, id: &str, s: ProjectSettings) -> StoreResult<Project> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE projects SET name = ?, app_name = ?, redirect_urls = ?, allowed_domains = ?,
                    allowed_emails = ?, link_ttl_seconds = ?, emails_per_minute = ?
                 WHERE id = ?
                 RETURNING id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                    link_ttl_seconds, emails_per_minute, is_dev, created_at",
            )
            .db()?
            .query_row(
                params![
                    s.name,
                    s.app_name,
                    to_json(&s.redirect_urls),
                    to_json(&s.allowed_domains),
                    to_json(&s.allowed_emails),
                    s.link_ttl_seconds,
                    s.emails_per_minute,
                    id
                ],
                |r| project_from_row(r, 0),
            )
            .optional()
            .db()?
            .ok_or(StoreError::NotFound)?
        })
        .await
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>> {
        self.read(|conn| {
            conn.prepare_cached(concat!("SELECT ", project_columns!(), " FROM projects p WHERE p.id = ?"))
                .db()?
                .query_row([id], |r| project_from_row(r, 0))
                .optional()
                .db()?
                .transpose()
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<()> {
        self.write(move |conn| {
            let exists =
                conn.prepare_cached("SELECT 1 FROM projects WHERE id = ?").db()?.exists([&key.project_id]).db()?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            conn.prepare_cached(
                "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .db()?
            .execute(params![key.id, key.project_id, &key.key_hash[..], key.hint, key.created_at.millis()])
            .db()?;
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self, project_id: &str) -> StoreResult<Vec<ApiKeyInfo>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, project_id, hint, created_at, revoked_at
                     FROM api_keys WHERE project_id = ? ORDER BY created_at, id",
                )
                .db()?;
            let rows = statement
                .query_map([project_id], |r| {
                    Ok(ApiKeyInfo {
                        id: r.get(0)?,
                        project_id: r.get(1)?,
                        hint: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                        revoked_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<_>>().db()
        })
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> StoreResult<()> {
        let key_id = key_id.to_string();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .db()?
                .execute(params![now.millis(), key_id])
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
                key_id,
                key_hash: hash32(stored_hash)?,
                revoked_at: revoked_at.map(Timestamp),
                project: project?,
            };
            self.keys.insert(generation, *key_hash, &key);
            Ok(Some(key))
        })
    }

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

    async fn start_login(&self, login: NewLogin) -> StoreResult<StartOutcome> {
        self.write(move |conn| start_login(conn, &login)).await
    }

    async fn verify_by_token(&self, req: VerifyByToken) -> StoreResult<VerifyOutcome> {
        self.write(move |conn| verify_by_token(conn, &req)).await
    }

    async fn verify_by_code(&self, req: VerifyByCode) -> StoreResult<VerifyOutcome> {
        self.write(move |conn| verify_by_code(conn, &req)).await
    }

    async fn get_login(&self, project_id: &str, login_id: &str, now: Timestamp) -> StoreResult<Option<LoginView>> {
        type Row = (String, i64, i64, Option<i64>, Option<i64>, Option<String>, Option<i64>, Option<String>);
        let row: Option<Row> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT l.id, l.created_at, l.expires_at, l.used_at, l.burned_at, o.status, o.attempts, o.last_error
                 FROM logins l LEFT JOIN outbox o ON o.login_id = l.id
                 WHERE l.project_id = ? AND l.id = ?",
            )
            .db()?
            .query_row([project_id, login_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .optional()
            .db()
        })?;
        let Some((id, created_at, expires_at, used_at, burned_at, email_status, attempts, last_error)) = row else {
            return Ok(None);
        };
        let status = if used_at.is_some() {
            LoginStatus::Verified
        } else if burned_at.is_some() {
            LoginStatus::Burned
        } else if expires_at <= now.millis() {
            LoginStatus::Expired
        } else {
            LoginStatus::Pending
        };
        let email_status = email_status.as_deref().and_then(EmailStatus::parse).unwrap_or(EmailStatus::Queued);
        Ok(Some(LoginView {
            id,
            status,
            email: EmailView { status: email_status, attempts: attempts.unwrap_or(0), last_error },
            created_at: Timestamp(created_at),
            expires_at: Timestamp(expires_at),
            verified_at: used_at.map(Timestamp),
        }))
    }

    async fn claim_emails(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
        self.write(move |conn| claim_emails(conn, &lease, limit)).await
    }

    async fn record_delivery(&self, email_id: &str, lease_owner: &str, result: DeliveryResult) -> StoreResult<bool> {
        let (email_id, lease_owner) = (email_id.to_string(), lease_owner.to_string());
        self.write(move |conn| record_delivery(conn, &email_id, &lease_owner, &result)).await
    }

    async fn next_email_due(&self) -> StoreResult<Option<Timestamp>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0)))
                 FROM outbox WHERE status IN ('queued', 'retrying')",
            )
            .db()?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .db()
            .map(|due| due.map(Timestamp))
        })
    }

    async fn list_events(&self, project_id: &str, limit: u32) -> StoreResult<Vec<Event>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at
                     FROM events WHERE project_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                )
                .db()?;
            let rows = statement
                .query_map(params![project_id, i64::from(limit)], |r| {
                    Ok(Event {
                        id: r.get(0)?,
                        project_id: r.get(1)?,
                        kind: r.get(2)?,
                        user_id: r.get(3)?,
                        login_id: r.get(4)?,
                        email: r.get(5)?,
                        reason: r.get(6)?,
                        ip_address: r.get(7)?,
                        user_agent: r.get(8)?,
                        created_at: Timestamp(r.get(9)?),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<_>>().db()
        })
    }
}
