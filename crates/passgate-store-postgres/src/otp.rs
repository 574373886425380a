//! `Otp` for PostgreSQL. Code sends go to the starts lane and code verifies
//! to the verify lanes, like links (see `batch/`, whose `otp.rs` writes
//! many of them in one statement); what each runs on its own is here. What
//! keeps it correct with many instances, and fast:
//! - a send runs after its project's row lock (taken once per batch by the
//!   starts lane), so two sends to one address cannot both pass its
//!   limits, and the project's emails-per-minute counter is counted in the
//!   same transaction, exactly; a batch pays one lock wait and one `fsync`
//!   for all of its sends (one send per transaction, each waiting for the
//!   previous one's `fsync`, ran about 400 sends a second);
//! - a verify on its own locks its code's row (`SELECT … FOR UPDATE`), so
//!   concurrent verifies of one code are decided one after the other, and
//!   the conditional `UPDATE` still decides single use. The batched verify
//!   reads without the lock and lets that same conditional `UPDATE`
//!   re-check what may have changed.

use std::sync::Arc;

use passgate_core::limits::MAX_LIVE_SESSIONS;
use passgate_core::limits::minute_bucket;
use passgate_core::otp::{MAX_OTP_FAILURES, OtpRefusal, StoredOtp, decide_otp};
use passgate_core::{EventId, EventKind, OtpId, SessionId, Timestamp, UserId};
use passgate_store::shared::{OtpProbe, otp_failed_event, otp_limit_reached, otp_rate_limited_event};
use passgate_store::{
    CreatedSession, NewEvent, NewOtp, Otp, OtpFailure, OtpVerifyOutcome, StartOutcome, StoreError, StoreResult, User,
    VerifiedOtp, VerifyOtp,
};
use sqlx::PgConnection;

use crate::batch::otp::{send_together, sends_together};
use crate::batch::starts::{Starts, lock_project_once};
use crate::batch::verifies::Verifies;
use crate::events::insert_event;
use crate::logins::count_code_failure;
use crate::writer::{Answer, Register};
use crate::{PgStore, db_err};

/// One send on its own, after its project's lock (see
/// `batch::otp::send_together` for many at once): idempotency, the probes
/// of every limit, then the code, its email, its event and the project's
/// count.
pub(crate) async fn send_one(tx: &mut PgConnection, otp: &NewOtp) -> StoreResult<StartOutcome> {
    let p = otp.project_id.as_str();
    if let Some(claim) = &otp.idempotency
        && let Some(repeat) = crate::logins::idempotent_repeat(tx, &otp.project_id, claim, otp.created_at).await?
    {
        return Ok(repeat);
    }
    let now_ms = otp.created_at.millis();
    let minute = minute_bucket(now_ms);
    let limits = otp.limits;
    let probe = sqlx::query!(
        r#"SELECT
            (SELECT created_at FROM otp_codes WHERE project_id = $1 AND email = $2 AND created_at > $3
             ORDER BY created_at DESC LIMIT 1 OFFSET $4) AS window_full,
            (SELECT expires_at FROM otp_codes WHERE project_id = $1 AND email = $2 AND expires_at > $5
               AND used_at IS NULL AND failures < $6
             ORDER BY expires_at DESC LIMIT 1 OFFSET $7) AS live_full,
            COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $8), 0) AS "current!",
            COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $9), 0) AS "previous!",
            (SELECT blocked_until FROM code_budgets WHERE project_id = $1 AND email = $2) AS blocked_until"#,
        p,
        otp.email,
        now_ms - limits.window_seconds * 1000,
        limits.sends_per_email - 1,
        now_ms,
        MAX_OTP_FAILURES,
        limits.live_codes - 1,
        minute,
        minute - 1
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let figures = OtpProbe {
        blocked_until: probe.blocked_until,
        window_full: probe.window_full,
        live_full: probe.live_full,
        project_current: probe.current,
        project_previous: probe.previous,
    };
    if let Some((limit, retry_after_seconds)) = otp_limit_reached(figures, limits, otp.created_at) {
        insert_event(tx, otp_rate_limited_event(otp, limit)).await?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }
    // The code, its email and its event in one statement.
    let event_id = EventId::generate();
    sqlx::query!(
        "WITH code AS (
            INSERT INTO otp_codes (id, project_id, email, code_hash, target_public_key, ip_address, user_agent,
                created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)),
          email AS (
            INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status, next_attempt_at,
                lease_owner, lease_until, created_at)
            VALUES ($10, $2, NULL, $3, $11, 'queued', $8, $12, $13, $8))
         INSERT INTO events (id, project_id, kind, otp_id, email, ip_address, user_agent, created_at)
         VALUES ($14, $2, $15, $1, $3, $6, $7, $8)",
        otp.id.as_str(),
        p,
        otp.email,
        &otp.code_hash[..],
        otp.target_public_key,
        otp.ip_address,
        otp.user_agent,
        now_ms,
        otp.expires_at.millis(),
        otp.email_id.as_str(),
        otp.email_payload_sealed,
        otp.email_lease.as_ref().map(|l| l.owner.as_str()),
        otp.email_lease.as_ref().map(|l| l.until.millis()),
        event_id.as_str(),
        EventKind::OtpSent.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    crate::logins::count_project_send(tx, &otp.project_id, otp.created_at, figures.project_current).await?;
    if let Some(claim) = &otp.idempotency {
        crate::logins::remember_answer(tx, &otp.project_id, claim, otp.created_at).await?;
    }
    Ok(StartOutcome::Started)
}

async fn refuse(
    tx: &mut PgConnection,
    req: &VerifyOtp,
    otp_id: Option<&OtpId>,
    failure: OtpFailure,
) -> StoreResult<OtpVerifyOutcome> {
    insert_event(tx, otp_failed_event(&req.project_id, otp_id, failure, req.now)).await?;
    Ok(OtpVerifyOutcome::Failed(failure))
}

/// [`verify_one`]'s read: the code, locked, with its address's block. By id
/// alone, and its project compared in Rust: it runs in a verify lane, whose
/// cached generic plan, asked for both, reached the code through the
/// address index by project — every code of the project read and locked
/// for each verify (the lanes' plan test covers it).
pub(crate) const READ_ONE: &str = "SELECT o.project_id, o.email, o.code_hash, o.failures, o.used_at, o.expires_at,
        o.target_public_key, o.ip_address, o.user_agent, b.blocked_until
     FROM otp_codes o LEFT JOIN code_budgets b ON b.project_id = o.project_id AND b.email = o.email
     WHERE o.id = $1 FOR UPDATE OF o";

/// A code as [`READ_ONE`] reads it.
#[derive(sqlx::FromRow)]
struct LockedCode {
    project_id: String,
    email: String,
    code_hash: Vec<u8>,
    failures: i64,
    used_at: Option<i64>,
    expires_at: i64,
    target_public_key: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    blocked_until: Option<i64>,
}

/// One verify on its own, under its code's lock (see
/// `batch::otp::verify_together` for many at once).
async fn verify_one(tx: &mut PgConnection, req: &VerifyOtp) -> StoreResult<OtpVerifyOutcome> {
    let row: Option<LockedCode> =
        sqlx::query_as(READ_ONE).bind(req.otp_id.as_str()).fetch_optional(&mut *tx).await.map_err(db_err)?;
    // A code of another project is no code here.
    let row = row.filter(|row| row.project_id == req.project_id.as_str());
    let Some(row) = row else { return refuse(tx, req, None, OtpFailure::Invalid).await };
    if req.session.is_none()
        && let Some(target_public_key) = req.target_public_key.clone().or_else(|| row.target_public_key.clone())
    {
        return Ok(OtpVerifyOutcome::NeedsSessionKey { target_public_key });
    }
    let stored = StoredOtp {
        code_hash: &row.code_hash,
        failures: row.failures,
        used_at: row.used_at.map(Timestamp),
        expires_at: Timestamp(row.expires_at),
        target_public_key: row.target_public_key.as_deref(),
        codes_blocked_until: row.blocked_until.map(Timestamp),
    };
    let target = match decide_otp(stored, &req.code_hash_candidates, req.target_public_key.as_deref(), req.now) {
        Ok(target) => target.map(str::to_string),
        Err(OtpRefusal::CountFailure) => {
            sqlx::query!("UPDATE otp_codes SET failures = failures + 1 WHERE id = $1", req.otp_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            count_code_failure(tx, &req.project_id, &row.email, req.now).await?;
            return refuse(tx, req, Some(&req.otp_id), OtpFailure::Invalid).await;
        }
        Err(OtpRefusal::Refuse(failure)) => return refuse(tx, req, Some(&req.otp_id), failure).await,
    };
    // Consumed (still the conditional UPDATE decides), the address's count
    // of wrong codes cleared, the user found or made and `otp.verified`
    // recorded, in one statement. `DO UPDATE` (a no-op) so the user's row
    // comes back even when a concurrent verify created it a moment ago; the
    // user is new exactly when our id came back.
    let now_ms = req.now.millis();
    let event_id = EventId::generate();
    let verified = sqlx::query!(
        r#"WITH used AS (
            UPDATE otp_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND failures < $3 AND expires_at > $1
            RETURNING id),
          reset AS (
            DELETE FROM code_budgets WHERE project_id = $4 AND email = $5 AND EXISTS (SELECT 1 FROM used)),
          the_user AS (
            INSERT INTO users (id, project_id, email, created_at) SELECT $6, $4, $5, $1 FROM used
            ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
            RETURNING id, created_at),
          recorded AS (
            INSERT INTO events (id, project_id, kind, user_id, otp_id, email, ip_address, user_agent, created_at)
            SELECT $7, $4, $8, the_user.id, $2, $5, $9, $10, $1 FROM the_user)
         SELECT id AS "id!", created_at AS "created_at!" FROM the_user"#,
        now_ms,
        req.otp_id.as_str(),
        MAX_OTP_FAILURES,
        req.project_id.as_str(),
        row.email.as_str(),
        req.new_user_id.as_str(),
        event_id.as_str(),
        EventKind::OtpVerified.as_str(),
        row.ip_address.as_deref(),
        row.user_agent.as_deref()
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(user_row) = verified else {
        // Consumed by nothing: another verify won. Say how it stands now.
        let used_at = sqlx::query_scalar!("SELECT used_at FROM otp_codes WHERE id = $1", req.otp_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .flatten();
        let failure = used_at
            .map_or(OtpFailure::Locked { until: None }, |used_at| OtpFailure::Used { used_at: Timestamp(used_at) });
        return refuse(tx, req, Some(&req.otp_id), failure).await;
    };
    let is_new_user = req.new_user_id == user_row.id.as_str();
    let user = User {
        id: UserId::from_trusted(user_row.id),
        project_id: req.project_id.clone(),
        email: row.email,
        created_at: Timestamp(user_row.created_at),
    };
    let session = match target {
        None => None,
        Some(target_public_key) => {
            // Checked before anything was written (see above); an error
            // rolls everything back should it ever be reached.
            let offer =
                req.session.as_ref().ok_or_else(|| StoreError::Conflict("a target key but no session key".into()))?;
            sqlx::query!(
                "INSERT INTO sessions (id, project_id, user_id, public_key, otp_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                offer.id.as_str(),
                req.project_id.as_str(),
                user.id.as_str(),
                offer.public_key,
                req.otp_id.as_str(),
                now_ms,
                offer.expires_at.millis()
            )
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let created = NewEvent {
                user_id: Some(&user.id),
                otp_id: Some(&req.otp_id),
                session_id: Some(&offer.id),
                ip_address: row.ip_address.as_deref(),
                user_agent: row.user_agent.as_deref(),
                ..NewEvent::new(&req.project_id, EventKind::SessionCreated, req.now)
            };
            insert_event(tx, created).await?;
            // At most MAX_LIVE_SESSIONS live keys a user: the oldest go.
            let dropped = sqlx::query_scalar!(
                "UPDATE sessions SET revoked_at = $1 WHERE id IN (
                    SELECT id FROM sessions
                    WHERE project_id = $2 AND user_id = $3 AND revoked_at IS NULL AND expires_at > $1
                    ORDER BY created_at DESC, id DESC OFFSET $4)
                 RETURNING id",
                now_ms,
                req.project_id.as_str(),
                user.id.as_str(),
                MAX_LIVE_SESSIONS
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            for id in dropped {
                let id = SessionId::from_trusted(id);
                let revoked = NewEvent {
                    user_id: Some(&user.id),
                    session_id: Some(&id),
                    reason: Some("session_limit"),
                    ..NewEvent::new(&req.project_id, EventKind::SessionRevoked, req.now)
                };
                insert_event(tx, revoked).await?;
            }
            Some(CreatedSession { id: offer.id.clone(), expires_at: offer.expires_at, target_public_key })
        }
    };
    Ok(OtpVerifyOutcome::Verified(VerifiedOtp { otp_id: req.otp_id.clone(), user, is_new_user, session }))
}

impl Otp for PgStore {
    async fn send_otp(&self, otp: NewOtp) -> StoreResult<StartOutcome> {
        let otp = Arc::new(otp);
        let registered = Arc::clone(&otp);
        let register: Register<Starts> = Box::new(move |batch| batch.otps.register(Arc::clone(&registered)));
        let kind = Arc::clone(&self.lanes.starts_kind);
        self.lanes
            .starts
            .write(Some(register), None, move |tx, batch| {
                let (otp, kind) = (Arc::clone(&otp), Arc::clone(&kind));
                Box::pin(async move {
                    lock_project_once(&mut *tx, batch, &otp.project_id).await?;
                    // The batch's first send of the project writes the sends
                    // that can go together; the others answer from its result.
                    let (key, project_id) = (otp.id.as_str(), &otp.project_id);
                    let pick = |registered: &[Arc<NewOtp>]| sends_together(registered, project_id);
                    let write = async |together: Vec<Arc<NewOtp>>| send_together(tx, project_id, &together).await;
                    let written =
                        batch.otps.answer_or_write_together(key, project_id.as_str(), pick, &kind.otps_together, write);
                    if let Some(outcome) = written.await? {
                        return Ok(outcome);
                    }
                    send_one(&mut *tx, &otp).await
                })
            })
            .await
    }

    async fn verify_otp(&self, req: VerifyOtp) -> StoreResult<OtpVerifyOutcome> {
        let offered_user = req.new_user_id.to_string();
        let req = Arc::new(req);
        let registered = Arc::clone(&req);
        let register: Register<Verifies> = Box::new(move |batch| batch.otps.register(Arc::clone(&registered)));
        let answer: Answer<Verifies, OtpVerifyOutcome> = Box::new(move |batch| batch.otps.answer(&offered_user));
        self.lanes
            .code_verifies
            .write(Some(register), Some(answer), move |tx, _| {
                let req = Arc::clone(&req);
                Box::pin(async move { verify_one(tx, &req).await })
            })
            .await
    }
}
