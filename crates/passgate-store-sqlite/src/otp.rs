//! `Otp` for SQLite: each method one job of the writer's batch, like
//! logins; what to do with the rows read is decided by
//! `passgate_core::otp` and `passgate_store::shared`.

use passgate_core::limits::MAX_LIVE_SESSIONS;
use passgate_core::otp::{MAX_OTP_FAILURES, OtpRefusal, StoredOtp, decide_otp};
use passgate_core::{EventKind, OtpId, SessionId, Timestamp};
use passgate_store::shared::{OtpProbe, otp_failed_event, otp_limit_reached, otp_rate_limited_event, otp_sent_event};
use passgate_store::{
    CreatedSession, NewEvent, NewOtp, Otp, OtpFailure, OtpVerifyOutcome, StartOutcome, StoreError, StoreResult,
    VerifiedOtp, VerifyOtp,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::logins::{
    codes_blocked_until, count_code_failure, count_project_send, idempotent_repeat, project_sends, remember_answer,
    reset_code_failures, upsert_user,
};
use crate::outbox::{QueuedEmail, queue_email};
use crate::{OrStoreError, SqliteStore};

/// The `n`-th newest value of a column among an address's codes matching
/// `condition`, if there are that many.
fn nth_newest(conn: &Connection, sql: &str, otp: &NewOtp, since: i64, n: i64) -> StoreResult<Option<i64>> {
    conn.prepare_cached(sql)
        .db()?
        .query_row(params![otp.project_id.as_str(), otp.email, since, n - 1], |r| r.get(0))
        .optional()
        .db()
}

fn probe_limits(conn: &Connection, otp: &NewOtp) -> StoreResult<OtpProbe> {
    let now = otp.created_at;
    let blocked_until = codes_blocked_until(conn, &otp.project_id, &otp.email)?.map(Timestamp::millis);
    let window_full = nth_newest(
        conn,
        "SELECT created_at FROM otp_codes WHERE project_id = ? AND email = ? AND created_at > ?
         ORDER BY created_at DESC LIMIT 1 OFFSET ?",
        otp,
        now.millis() - otp.limits.window_seconds * 1000,
        otp.limits.sends_per_email,
    )?;
    // When the live codes fill every place, the one that frees a place
    // first is the `live_codes`-th to expire counting from the last.
    let live_full = nth_newest(
        conn,
        &format!(
            "SELECT expires_at FROM otp_codes WHERE project_id = ? AND email = ? AND expires_at > ?
               AND used_at IS NULL AND failures < {MAX_OTP_FAILURES}
             ORDER BY expires_at DESC LIMIT 1 OFFSET ?"
        ),
        otp,
        now.millis(),
        otp.limits.live_codes,
    )?;
    let (project_current, project_previous) = project_sends(conn, &otp.project_id, now)?;
    Ok(OtpProbe { blocked_until, window_full, live_full, project_current, project_previous })
}

fn send_otp(conn: &Connection, otp: &NewOtp) -> StoreResult<StartOutcome> {
    if let Some(claim) = &otp.idempotency
        && let Some(repeat) = idempotent_repeat(conn, &otp.project_id, claim, otp.created_at)?
    {
        return Ok(repeat);
    }
    let probe = probe_limits(conn, otp)?;
    if let Some((limit, retry_after_seconds)) = otp_limit_reached(probe, otp.limits, otp.created_at) {
        insert_event(conn, otp_rate_limited_event(otp, limit))?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }
    conn.prepare_cached(
        "INSERT INTO otp_codes (id, project_id, email, code_hash, target_public_key, ip_address, user_agent,
            created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![
        otp.id.as_str(),
        otp.project_id.as_str(),
        otp.email,
        &otp.code_hash[..],
        otp.target_public_key,
        otp.ip_address,
        otp.user_agent,
        otp.created_at.millis(),
        otp.expires_at.millis()
    ])
    .db()?;
    let email = QueuedEmail {
        id: &otp.email_id,
        project_id: &otp.project_id,
        login_id: None,
        recipient: &otp.email,
        payload_sealed: &otp.email_payload_sealed,
        lease: otp.email_lease.as_ref(),
        at: otp.created_at,
    };
    queue_email(conn, &email)?;
    count_project_send(conn, &otp.project_id, otp.created_at, probe.project_current)?;
    if let Some(claim) = &otp.idempotency {
        remember_answer(conn, &otp.project_id, claim, otp.created_at)?;
    }
    insert_event(conn, otp_sent_event(otp))?;
    Ok(StartOutcome::Started)
}

fn refuse(
    conn: &Connection,
    req: &VerifyOtp,
    otp_id: Option<&OtpId>,
    failure: OtpFailure,
) -> StoreResult<OtpVerifyOutcome> {
    insert_event(conn, otp_failed_event(&req.project_id, otp_id, failure, req.now))?;
    Ok(OtpVerifyOutcome::Failed(failure))
}

fn verify_otp(conn: &Connection, req: &VerifyOtp) -> StoreResult<OtpVerifyOutcome> {
    type Row = (String, Vec<u8>, i64, Option<i64>, i64, Option<String>, Option<String>, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT email, code_hash, failures, used_at, expires_at, target_public_key, ip_address, user_agent
             FROM otp_codes WHERE project_id = ? AND id = ?",
        )
        .db()?
        .query_row(params![req.project_id.as_str(), req.otp_id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .optional()
        .db()?;
    let Some((email, code_hash, failures, used_at, expires_at, target_at_send, ip_address, user_agent)) = row else {
        return refuse(conn, req, None, OtpFailure::Invalid);
    };
    if req.session.is_none()
        && let Some(target_public_key) = req.target_public_key.clone().or_else(|| target_at_send.clone())
    {
        return Ok(OtpVerifyOutcome::NeedsSessionKey { target_public_key });
    }
    let stored = StoredOtp {
        code_hash: &code_hash,
        failures,
        used_at: used_at.map(Timestamp),
        expires_at: Timestamp(expires_at),
        target_public_key: target_at_send.as_deref(),
        codes_blocked_until: codes_blocked_until(conn, &req.project_id, &email)?,
    };
    let target = match decide_otp(stored, &req.code_hash_candidates, req.target_public_key.as_deref(), req.now) {
        Ok(target) => target.map(str::to_string),
        Err(OtpRefusal::CountFailure) => {
            conn.prepare_cached("UPDATE otp_codes SET failures = failures + 1 WHERE id = ?")
                .db()?
                .execute([req.otp_id.as_str()])
                .db()?;
            count_code_failure(conn, &req.project_id, &email, req.now)?;
            return refuse(conn, req, Some(&req.otp_id), OtpFailure::Invalid);
        }
        Err(OtpRefusal::Refuse(failure)) => return refuse(conn, req, Some(&req.otp_id), failure),
    };
    // Still one conditional UPDATE decides who wins.
    let now_ms = req.now.millis();
    let consumed = conn
        .prepare_cached(&format!(
            "UPDATE otp_codes SET used_at = ?
             WHERE id = ? AND used_at IS NULL AND failures < {MAX_OTP_FAILURES} AND expires_at > ?"
        ))
        .db()?
        .execute(params![now_ms, req.otp_id.as_str(), now_ms])
        .db()?;
    if consumed == 0 {
        let used_at: Option<i64> = conn
            .prepare_cached("SELECT used_at FROM otp_codes WHERE id = ?")
            .db()?
            .query_row([req.otp_id.as_str()], |r| r.get(0))
            .optional()
            .db()?
            .flatten();
        let failure = used_at
            .map_or(OtpFailure::Locked { until: None }, |used_at| OtpFailure::Used { used_at: Timestamp(used_at) });
        return refuse(conn, req, Some(&req.otp_id), failure);
    }
    reset_code_failures(conn, &req.project_id, &email)?;
    let (user, is_new_user) = upsert_user(conn, &req.project_id, &email, &req.new_user_id, req.now)?;
    insert_event(
        conn,
        NewEvent {
            user_id: Some(&user.id),
            otp_id: Some(&req.otp_id),
            email: Some(&email),
            // As the app passed them when it asked for the code.
            ip_address: ip_address.as_deref(),
            user_agent: user_agent.as_deref(),
            ..NewEvent::new(&req.project_id, EventKind::OtpVerified, req.now)
        },
    )?;
    let session = match target {
        None => None,
        Some(target_public_key) => {
            // Checked before anything was written (see above); an error
            // rolls everything back should it ever be reached.
            let offer =
                req.session.as_ref().ok_or_else(|| StoreError::Conflict("a target key but no session key".into()))?;
            conn.prepare_cached(
                "INSERT INTO sessions (id, project_id, user_id, public_key, otp_id, created_at, expires_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .db()?
            .execute(params![
                offer.id.as_str(),
                req.project_id.as_str(),
                user.id.as_str(),
                offer.public_key,
                req.otp_id.as_str(),
                now_ms,
                offer.expires_at.millis()
            ])
            .db()?;
            let created = NewEvent {
                user_id: Some(&user.id),
                otp_id: Some(&req.otp_id),
                session_id: Some(&offer.id),
                ip_address: ip_address.as_deref(),
                user_agent: user_agent.as_deref(),
                ..NewEvent::new(&req.project_id, EventKind::SessionCreated, req.now)
            };
            insert_event(conn, created)?;
            // At most MAX_LIVE_SESSIONS live keys a user: the oldest go.
            let dropped: Vec<String> = {
                let mut statement = conn
                    .prepare_cached(
                        "UPDATE sessions SET revoked_at = ?1 WHERE id IN (
                            SELECT id FROM sessions
                            WHERE project_id = ?2 AND user_id = ?3 AND revoked_at IS NULL AND expires_at > ?1
                            ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?4)
                         RETURNING id",
                    )
                    .db()?;
                let rows = statement
                    .query_map(params![now_ms, req.project_id.as_str(), user.id.as_str(), MAX_LIVE_SESSIONS], |r| {
                        r.get(0)
                    })
                    .db()?;
                rows.collect::<Result<_, _>>().db()?
            };
            for id in dropped {
                let id = SessionId::from_trusted(id);
                let revoked = NewEvent {
                    user_id: Some(&user.id),
                    session_id: Some(&id),
                    reason: Some("session_limit"),
                    ..NewEvent::new(&req.project_id, EventKind::SessionRevoked, req.now)
                };
                insert_event(conn, revoked)?;
            }
            Some(CreatedSession { id: offer.id.clone(), expires_at: offer.expires_at, target_public_key })
        }
    };
    Ok(OtpVerifyOutcome::Verified(VerifiedOtp { otp_id: req.otp_id.clone(), user, is_new_user, session }))
}

impl Otp for SqliteStore {
    async fn send_otp(&self, otp: NewOtp) -> StoreResult<StartOutcome> {
        self.write(move |conn| send_otp(conn, &otp)).await
    }

    async fn verify_otp(&self, req: VerifyOtp) -> StoreResult<OtpVerifyOutcome> {
        self.write(move |conn| verify_otp(conn, &req)).await
    }
}
