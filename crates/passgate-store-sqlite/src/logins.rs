//! `Logins` for SQLite: each method one job of the writer's batch (see
//! `writer.rs`), so "one transaction per method" holds; what to do with the
//! rows read is decided by `passgate_core::login` and `passgate_store::shared`.

use passgate_core::constant_time_eq;
use passgate_core::limits::{
    IDEMPOTENCY_WINDOW_SECONDS, MAX_CODE_FAILURES, MAX_VERIFIER_FAILURES, code_block_until, minute_bucket,
};
use passgate_core::login::{CodeLogin, LoginStatus, Refusal, decide_code, lost_race, token_refusal};
use passgate_core::{EventKind, InviteId, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::shared::{Consumed, LimitProbe, failed_event, limit_reached, rate_limited_event, started_event};
use passgate_store::{
    AuthMethod, EmailStatus, EmailView, IdempotencyClaim, LoginView, Logins, NewEvent, NewLogin, StartOutcome,
    StoreError, StoreResult, User, VerifiedLogin, VerifyByCode, VerifyByToken, VerifyFailure, VerifyOutcome,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::{OrStoreError, SqliteStore};

/// Finds the user of `email` in a project, creating them with `new_id`.
pub(crate) fn upsert_user(
    conn: &Connection,
    project_id: &ProjectId,
    email: &str,
    new_id: &UserId,
    now: Timestamp,
) -> StoreResult<(User, bool)> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users (id, project_id, email, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (project_id, email) DO NOTHING",
        )
        .db()?
        .execute(params![new_id.as_str(), project_id.as_str(), email, now.millis()])
        .db()?
        == 1;
    let (id, created_at): (String, i64) = conn
        .prepare_cached("SELECT id, created_at FROM users WHERE project_id = ? AND email = ?")
        .db()?
        .query_row(params![project_id.as_str(), email], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?;
    let user = User {
        id: UserId::from_trusted(id),
        project_id: project_id.clone(),
        email: email.to_string(),
        created_at: Timestamp(created_at),
    };
    Ok((user, inserted))
}

/// Writes what a refusal decided (a failure counted, which may burn the
/// login) and records `auth.failed`; returns the failure to answer.
pub(crate) fn refuse(
    conn: &Connection,
    project_id: &ProjectId,
    login_id: Option<&LoginId>,
    refusal: Refusal,
    now: Timestamp,
) -> StoreResult<VerifyOutcome> {
    if let (Some((verifier, code)), Some(login_id)) = (refusal.counted(), login_id) {
        // Either count; reaching its maximum burns the login (the other
        // count is below its own maximum, or the login would be burned).
        conn.prepare_cached(
            "UPDATE logins SET verifier_failures = verifier_failures + ?, code_failures = code_failures + ?,
                burned_at = CASE WHEN verifier_failures + ? >= ? OR code_failures + ? >= ? THEN ? ELSE burned_at END
             WHERE id = ? AND used_at IS NULL AND burned_at IS NULL",
        )
        .db()?
        .execute(params![
            verifier,
            code,
            verifier,
            MAX_VERIFIER_FAILURES,
            code,
            MAX_CODE_FAILURES,
            now.millis(),
            login_id.as_str()
        ])
        .db()?;
    }
    let failure = refusal.failure();
    insert_event(conn, failed_event(project_id, login_id, failure, now))?;
    Ok(VerifyOutcome::Failed(failure))
}

/// When codes for an address are refused until, if they are.
pub(crate) fn codes_blocked_until(
    conn: &Connection,
    project_id: &ProjectId,
    email: &str,
) -> StoreResult<Option<Timestamp>> {
    let until: Option<Option<i64>> = conn
        .prepare_cached("SELECT blocked_until FROM code_budgets WHERE project_id = ? AND email = ?")
        .db()?
        .query_row(params![project_id.as_str(), email], |r| r.get(0))
        .optional()
        .db()?;
    Ok(until.flatten().map(Timestamp))
}

/// Counts a wrong code against its address; at the threshold and beyond,
/// blocks the address's codes (`code_block_until` says how long).
pub(crate) fn count_code_failure(
    conn: &Connection,
    project_id: &ProjectId,
    email: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let failures: i64 = conn
        .prepare_cached(
            "INSERT INTO code_budgets (project_id, email, failures, updated_at) VALUES (?, ?, 1, ?)
             ON CONFLICT (project_id, email) DO UPDATE SET failures = failures + 1, updated_at = excluded.updated_at
             RETURNING failures",
        )
        .db()?
        .query_row(params![project_id.as_str(), email, now.millis()], |r| r.get(0))
        .db()?;
    if let Some(until) = code_block_until(failures, now.millis()) {
        conn.prepare_cached("UPDATE code_budgets SET blocked_until = ? WHERE project_id = ? AND email = ?")
            .db()?
            .execute(params![until, project_id.as_str(), email])
            .db()?;
    }
    Ok(())
}

/// A right code: the address's count of wrong ones starts over.
pub(crate) fn reset_code_failures(conn: &Connection, project_id: &ProjectId, email: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM code_budgets WHERE project_id = ? AND email = ?")
        .db()?
        .execute(params![project_id.as_str(), email])
        .db()?;
    Ok(())
}

pub(crate) fn finish_verified(
    conn: &Connection,
    consumed: Consumed,
    new_user_id: &UserId,
    now: Timestamp,
) -> StoreResult<VerifyOutcome> {
    let Consumed { project_id, login_id, email, state, method } = consumed;
    let (user, is_new_user) = upsert_user(conn, &project_id, &email, new_user_id, now)?;
    let event = NewEvent {
        user_id: Some(&user.id),
        login_id: Some(&login_id),
        email: Some(&email),
        reason: Some(method.amr()),
        ..NewEvent::new(&project_id, EventKind::AuthVerified, now)
    };
    insert_event(conn, event)?;
    Ok(VerifyOutcome::Verified(VerifiedLogin { login_id, user, is_new_user, state, method, invite: None }))
}

/// The newest time of the `limit`-th most recent login matching a filter
/// inside a window: if there is one, the window is full, and it frees when
/// that login leaves it.
fn window_full(
    conn: &Connection,
    sql: &str,
    key: &str,
    project_id: &ProjectId,
    since: i64,
    limit: i64,
) -> StoreResult<Option<i64>> {
    conn.prepare_cached(sql)
        .db()?
        .query_row(params![project_id.as_str(), key, since, limit - 1], |r| r.get(0))
        .optional()
        .db()
}

/// The project's emails of this minute and of the previous one.
pub(crate) fn project_sends(conn: &Connection, project_id: &ProjectId, now: Timestamp) -> StoreResult<(i64, i64)> {
    let minute = minute_bucket(now.millis());
    let (mut current, mut previous) = (0, 0);
    let mut counts = conn
        .prepare_cached("SELECT minute, sent FROM project_send_counts WHERE project_id = ? AND minute >= ?")
        .db()?;
    let mut rows = counts.query(params![project_id.as_str(), minute - 1]).db()?;
    while let Some(row) = rows.next().db()? {
        let (m, sent): (i64, i64) = (row.get(0).db()?, row.get(1).db()?);
        if m == minute {
            current = sent;
        } else if m == minute - 1 {
            previous = sent;
        }
    }
    Ok((current, previous))
}

/// Counts one email against the project's minute; the first of a new
/// minute (`current` was 0) drops the counters no longer needed.
pub(crate) fn count_project_send(
    conn: &Connection,
    project_id: &ProjectId,
    now: Timestamp,
    current: i64,
) -> StoreResult<()> {
    let minute = minute_bucket(now.millis());
    conn.prepare_cached(
        "INSERT INTO project_send_counts (project_id, minute, sent) VALUES (?, ?, 1)
         ON CONFLICT (project_id, minute) DO UPDATE SET sent = sent + 1",
    )
    .db()?
    .execute(params![project_id.as_str(), minute])
    .db()?;
    if current == 0 {
        conn.prepare_cached("DELETE FROM project_send_counts WHERE project_id = ? AND minute < ?")
            .db()?
            .execute(params![project_id.as_str(), minute - 1])
            .db()?;
    }
    Ok(())
}

/// The answer to repeat for a request whose `Idempotency-Key` was seen in
/// the last 24 hours: its first answer, or a conflict for another request.
pub(crate) fn idempotent_repeat(
    conn: &Connection,
    project_id: &ProjectId,
    claim: &IdempotencyClaim,
    now: Timestamp,
) -> StoreResult<Option<StartOutcome>> {
    let since = now.millis() - IDEMPOTENCY_WINDOW_SECONDS * 1000;
    let previous: Option<(Vec<u8>, i64, String)> = conn
        .prepare_cached(
            "SELECT fingerprint, response_status, response_body FROM idempotency_keys
             WHERE project_id = ? AND key = ? AND created_at > ?",
        )
        .db()?
        .query_row(params![project_id.as_str(), claim.key, since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    Ok(previous.map(|(fingerprint, status, body)| {
        if constant_time_eq(&fingerprint, &claim.fingerprint) {
            StartOutcome::Replayed { status: u16::try_from(status).unwrap_or(200), body }
        } else {
            StartOutcome::IdempotencyConflict
        }
    }))
}

/// Keeps a request's answer for repeats of its `Idempotency-Key`.
pub(crate) fn remember_answer(
    conn: &Connection,
    project_id: &ProjectId,
    claim: &IdempotencyClaim,
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (project_id, key, fingerprint, response_status, response_body, created_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (project_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
            response_status = excluded.response_status, response_body = excluded.response_body,
            created_at = excluded.created_at",
    )
    .db()?
    .execute(params![
        project_id.as_str(),
        claim.key,
        &claim.fingerprint[..],
        i64::from(claim.response_status),
        claim.response_body,
        now.millis()
    ])
    .db()?;
    Ok(())
}

/// Reads what the start's limits depend on, each probe only while no
/// earlier limit is reached (as the contract orders them).
fn probe_limits(conn: &Connection, login: &NewLogin) -> StoreResult<LimitProbe> {
    let (limits, now_ms) = (login.limits, login.created_at.millis());
    let recipient_full = window_full(
        conn,
        "SELECT created_at FROM logins WHERE project_id = ? AND email = ? AND created_at > ?
         ORDER BY created_at DESC LIMIT 1 OFFSET ?",
        &login.email,
        &login.project_id,
        now_ms - limits.per_recipient_window_seconds * 1000,
        limits.per_recipient,
    )?;
    let (project_current, project_previous) = project_sends(conn, &login.project_id, login.created_at)?;
    let mut probe = LimitProbe { recipient_full, project_current, project_previous, ..LimitProbe::default() };
    let earlier_limit_reached = limit_reached(probe, limits, login.created_at).is_some();
    if let (false, Some(network)) = (earlier_limit_reached, &login.ip_network) {
        probe.ip_full = window_full(
            conn,
            "SELECT created_at FROM logins WHERE project_id = ? AND ip_network = ? AND created_at > ?
             ORDER BY created_at DESC LIMIT 1 OFFSET ?",
            network,
            &login.project_id,
            now_ms - 60_000,
            limits.per_ip_per_minute,
        )?;
    }
    Ok(probe)
}

pub(crate) fn start_login(conn: &Connection, login: &NewLogin) -> StoreResult<StartOutcome> {
    let now_ms = login.created_at.millis();

    if let Some(claim) = &login.idempotency
        && let Some(repeat) = idempotent_repeat(conn, &login.project_id, claim, login.created_at)?
    {
        return Ok(repeat);
    }

    let probe = probe_limits(conn, login)?;
    if let Some((limit, retry_after_seconds)) = limit_reached(probe, login.limits, login.created_at) {
        insert_event(conn, rate_limited_event(login, limit))?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }

    conn.prepare_cached(
        "INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
            validation_url, ip_network, user_agent, created_at, expires_at, invite_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        login.id.as_str(),
        login.project_id.as_str(),
        login.email,
        &login.token_hash[..],
        login.code_hash.as_ref().map(|h| &h[..]),
        login.code_challenge,
        login.state,
        login.validation_url,
        login.ip_network,
        login.user_agent,
        now_ms,
        login.expires_at.millis(),
        login.invite_id.as_ref().map(InviteId::as_str)
    ])
    .db()?;
    crate::outbox::queue_login_email(conn, login)?;
    count_project_send(conn, &login.project_id, login.created_at, probe.project_current)?;
    if let Some(claim) = &login.idempotency {
        remember_answer(conn, &login.project_id, claim, login.created_at)?;
    }
    insert_event(conn, started_event(login))?;
    Ok(StartOutcome::Started)
}

fn verify_by_token(conn: &Connection, req: &VerifyByToken) -> StoreResult<VerifyOutcome> {
    let now_ms = req.now.millis();
    // The single-use guarantee: one conditional UPDATE.
    let consumed: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "UPDATE logins SET used_at = ?
             WHERE project_id = ? AND token_hash = ? AND used_at IS NULL AND burned_at IS NULL
               AND expires_at > ? AND (code_challenge IS NULL OR code_challenge = ?) AND invite_id IS NULL
             RETURNING id, email, state",
        )
        .db()?
        .query_row(params![now_ms, req.project_id.as_str(), &req.token_hash[..], now_ms, req.verifier_challenge], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .db()?;
    if let Some((login_id, email, state)) = consumed {
        let consumed = Consumed {
            project_id: req.project_id.clone(),
            login_id: LoginId::from_trusted(login_id),
            email,
            state,
            method: AuthMethod::EmailLink,
        };
        return finish_verified(conn, consumed, &req.new_user_id, req.now);
    }
    type Row = (String, Option<i64>, Option<i64>, i64, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT id, used_at, burned_at, expires_at, invite_id FROM logins WHERE project_id = ? AND token_hash = ?",
        )
        .db()?
        .query_row(params![req.project_id.as_str(), &req.token_hash[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .db()?;
    if let Some((login_id, _, _, _, Some(invite_id))) = &row {
        let (login_id, invite_id) =
            (LoginId::from_trusted(login_id.clone()), InviteId::from_trusted(invite_id.clone()));
        return crate::invites::accept_invite(conn, &login_id, &invite_id, req);
    }
    let login_id = row.as_ref().map(|(id, ..)| LoginId::from_trusted(id.clone()));
    let times =
        row.map(|(_, used, burned, expires, _)| (used.map(Timestamp), burned.map(Timestamp), Timestamp(expires)));
    refuse(conn, &req.project_id, login_id.as_ref(), token_refusal(times, req.now), req.now)
}

fn verify_by_code(conn: &Connection, req: &VerifyByCode) -> StoreResult<VerifyOutcome> {
    type Row = (String, Option<String>, Option<Vec<u8>>, Option<String>, Option<i64>, Option<i64>, i64);
    let now_ms = req.now.millis();
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT email, state, code_hash, code_challenge, used_at, burned_at, expires_at
             FROM logins WHERE project_id = ? AND id = ?",
        )
        .db()?
        .query_row(params![req.project_id.as_str(), req.login_id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .optional()
        .db()?;
    let Some((email, state, code_hash, code_challenge, used_at, burned_at, expires_at)) = row else {
        return refuse(conn, &req.project_id, None, Refusal::Refuse(VerifyFailure::Invalid), req.now);
    };
    let login = CodeLogin {
        used_at: used_at.map(Timestamp),
        burned_at: burned_at.map(Timestamp),
        expires_at: Timestamp(expires_at),
        code_hash: code_hash.as_deref(),
        code_challenge: code_challenge.as_deref(),
        codes_blocked_until: codes_blocked_until(conn, &req.project_id, &email)?,
    };
    if let Err(refusal) = decide_code(login, &req.code_hash_candidates, req.verifier_challenge.as_deref(), req.now) {
        if refusal == Refusal::CountCodeFailure {
            count_code_failure(conn, &req.project_id, &email, req.now)?;
        }
        return refuse(conn, &req.project_id, Some(&req.login_id), refusal, req.now);
    }
    // Still one conditional UPDATE decides who wins.
    let consumed = conn
        .prepare_cached(
            "UPDATE logins SET used_at = ?
             WHERE id = ? AND used_at IS NULL AND burned_at IS NULL AND expires_at > ?",
        )
        .db()?
        .execute(params![now_ms, req.login_id.as_str(), now_ms])
        .db()?;
    if consumed == 0 {
        // Another verify won the race: report the login as it stands now.
        let used_at: Option<i64> = conn
            .prepare_cached("SELECT used_at FROM logins WHERE id = ?")
            .db()?
            .query_row([req.login_id.as_str()], |r| r.get(0))
            .optional()
            .db()?
            .flatten();
        let failure = lost_race(used_at.map(Timestamp));
        return refuse(conn, &req.project_id, Some(&req.login_id), Refusal::Refuse(failure), req.now);
    }
    reset_code_failures(conn, &req.project_id, &email)?;
    let consumed = Consumed {
        project_id: req.project_id.clone(),
        login_id: req.login_id.clone(),
        email,
        state,
        method: AuthMethod::EmailCode,
    };
    finish_verified(conn, consumed, &req.new_user_id, req.now)
}

impl Logins for SqliteStore {
    async fn start_login(&self, login: NewLogin) -> StoreResult<StartOutcome> {
        self.write(move |conn| start_login(conn, &login)).await
    }

    async fn verify_by_token(&self, req: VerifyByToken) -> StoreResult<VerifyOutcome> {
        self.write(move |conn| verify_by_token(conn, &req)).await
    }

    async fn verify_by_code(&self, req: VerifyByCode) -> StoreResult<VerifyOutcome> {
        self.write(move |conn| verify_by_code(conn, &req)).await
    }

    async fn get_login(
        &self,
        project_id: &ProjectId,
        login_id: &LoginId,
        now: Timestamp,
    ) -> StoreResult<Option<LoginView>> {
        type Row = (i64, i64, Option<i64>, Option<i64>, Option<String>, Option<i64>, Option<String>);
        let row: Option<Row> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT l.created_at, l.expires_at, l.used_at, l.burned_at, o.status, o.attempts, o.last_error
                 FROM logins l LEFT JOIN outbox o ON o.login_id = l.id
                 WHERE l.project_id = ? AND l.id = ?",
            )
            .db()?
            .query_row([project_id.as_str(), login_id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .optional()
            .db()
        })?;
        let Some((created_at, expires_at, used_at, burned_at, email_status, attempts, last_error)) = row else {
            return Ok(None);
        };
        let (used_at, burned_at, expires_at) =
            (used_at.map(Timestamp), burned_at.map(Timestamp), Timestamp(expires_at));
        // A login's email row is written with it, so a missing one means it
        // was never queued yet: show it as queued.
        let email_status = email_status.as_deref().map(EmailStatus::parse).transpose()?.unwrap_or(EmailStatus::Queued);
        Ok(Some(LoginView {
            id: login_id.clone(),
            status: LoginStatus::of(used_at, burned_at, expires_at, now),
            email: EmailView { status: email_status, attempts: attempts.unwrap_or(0), last_error },
            created_at: Timestamp(created_at),
            expires_at,
            verified_at: used_at,
        }))
    }

    async fn forget_dev_logins(&self, project_id: &ProjectId) -> StoreResult<u64> {
        let project_id = project_id.clone();
        self.write(move |conn| {
            let id = project_id.as_str();
            let is_dev: Option<bool> = conn
                .prepare_cached("SELECT is_dev FROM projects WHERE id = ?")
                .db()?
                .query_row([id], |r| r.get(0))
                .optional()
                .db()?;
            if is_dev != Some(true) {
                return Err(StoreError::NotFound);
            }
            for sql in [
                "DELETE FROM outbox WHERE project_id = ? AND status IN ('queued', 'retrying')",
                "DELETE FROM idempotency_keys WHERE project_id = ?",
                "DELETE FROM project_send_counts WHERE project_id = ?",
                "DELETE FROM code_budgets WHERE project_id = ?",
                "DELETE FROM otp_codes WHERE project_id = ?",
            ] {
                conn.prepare_cached(sql).db()?.execute([id]).db()?;
            }
            let forgotten = conn.prepare_cached("DELETE FROM logins WHERE project_id = ?").db()?.execute([id]).db()?;
            Ok(forgotten as u64)
        })
        .await
    }
}
