//! One-time codes in the lanes' batches: the statements that write many
//! code sends (in the starts lane, after the project's lock) or many code
//! verifies (in the verify lanes, ahead of their transaction) at once. What
//! one send or one verify runs on its own is in `otp.rs`; these statements
//! must reach the same decisions, and leave every case they cannot decide
//! the same way to that path.

use std::sync::Arc;

use passgate_core::limits::minute_bucket;
use passgate_core::otp::{MAX_OTP_FAILURES, StoredOtp, decide_otp};
use passgate_core::{EventId, EventKind, OtpId, ProjectId, Timestamp, UserId};
use passgate_store::shared::{OtpProbe, otp_limit_reached, otp_rate_limited_event};
use passgate_store::{NewOtp, OtpVerifyOutcome, StartOutcome, StoreError, StoreResult, User, VerifiedOtp, VerifyOtp};
use sqlx::PgConnection;

use crate::db_err;
use crate::events::insert_event;

/// The project's code sends that one statement can write with the same
/// result as one statement each: none sends an `Idempotency-Key`, all fall
/// in one minute with the same limits, and no two share an address — so no
/// send's per-address probes could see another's row. Whether the project
/// limit has room for all of them is the statement's to check.
pub(crate) fn sends_together(registered: &[Arc<NewOtp>], project_id: &ProjectId) -> Vec<Arc<NewOtp>> {
    let mut together: Vec<Arc<NewOtp>> = Vec::new();
    for otp in registered.iter().filter(|o| o.project_id == *project_id && o.idempotency.is_none()) {
        if let Some(first) = together.first() {
            let same_minute = minute_bucket(first.created_at.millis()) == minute_bucket(otp.created_at.millis());
            let shares_address = together.iter().any(|t| t.email == otp.email);
            if !same_minute || first.limits != otp.limits || shares_address {
                continue;
            }
        }
        together.push(Arc::clone(otp));
    }
    together
}

/// [`send_together`]'s statement (a constant, so `PgStore::lane_plans` can explain it).
pub(crate) const SEND_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::BIGINT[],
            $9::BIGINT[], $10::TEXT[], $11::BYTEA[], $12::TEXT[], $13::BIGINT[], $14::TEXT[])
          AS t(id, email, code_hash, target_public_key, ip_address, user_agent, created_at, expires_at, email_id,
            payload_sealed, lease_owner, lease_until, event_id)),
      counts AS (
        SELECT COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $15), 0)
            AS current_sent,
          COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $15 - 1), 0)
            AS previous_sent),
      room AS (
        SELECT 1 FROM counts WHERE current_sent + previous_sent * $16::BIGINT / 60000 + $17::BIGINT <= $18::BIGINT),
      probe AS MATERIALIZED (
        SELECT input.*,
          (SELECT b.blocked_until FROM code_budgets b
           WHERE b.project_id = $1 AND b.email = input.email AND b.blocked_until > input.created_at) AS blocked_until,
          (SELECT o.created_at FROM otp_codes o
           WHERE o.project_id = $1 AND o.email = input.email AND o.created_at > input.created_at - $19::BIGINT
           ORDER BY o.created_at DESC LIMIT 1 OFFSET $20) AS window_full,
          (SELECT o.expires_at FROM otp_codes o
           WHERE o.project_id = $1 AND o.email = input.email AND o.expires_at > input.created_at
             AND o.used_at IS NULL AND o.failures < $21::BIGINT
           ORDER BY o.expires_at DESC LIMIT 1 OFFSET $22) AS live_full
        FROM input WHERE EXISTS (SELECT 1 FROM room)),
      admitted AS MATERIALIZED (
        SELECT * FROM probe WHERE blocked_until IS NULL AND window_full IS NULL AND live_full IS NULL),
      code AS (
        INSERT INTO otp_codes (id, project_id, email, code_hash, target_public_key, ip_address, user_agent,
            created_at, expires_at)
        SELECT id, $1, email, code_hash, target_public_key, ip_address, user_agent, created_at, expires_at
        FROM admitted),
      email AS (
        INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status, next_attempt_at,
            lease_owner, lease_until, created_at)
        SELECT email_id, $1, NULL, email, payload_sealed, 'queued', created_at, lease_owner, lease_until, created_at
        FROM admitted),
      counted AS (
        INSERT INTO project_send_counts (project_id, minute, sent)
        SELECT $1, $15, COUNT(*) FROM admitted HAVING COUNT(*) > 0
        ON CONFLICT (project_id, minute) DO UPDATE SET sent = project_send_counts.sent + excluded.sent),
      sent AS (
        INSERT INTO events (id, project_id, kind, otp_id, email, ip_address, user_agent, created_at)
        SELECT event_id, $1, $23::TEXT, id, email, ip_address, user_agent, created_at FROM admitted)
     SELECT counts.current_sent, EXISTS (SELECT 1 FROM room),
        ARRAY(SELECT id FROM probe WHERE id NOT IN (SELECT id FROM admitted) ORDER BY id),
        ARRAY(SELECT blocked_until FROM probe WHERE id NOT IN (SELECT id FROM admitted) ORDER BY id),
        ARRAY(SELECT window_full FROM probe WHERE id NOT IN (SELECT id FROM admitted) ORDER BY id),
        ARRAY(SELECT live_full FROM probe WHERE id NOT IN (SELECT id FROM admitted) ORDER BY id)
     FROM counts";

/// What [`SEND_TOGETHER`] answers: the minute's count before the batch,
/// whether the project had room, and the refused sends with their probes.
type SendRow = (i64, bool, Vec<String>, Vec<Option<i64>>, Vec<Option<i64>>, Vec<Option<i64>>);

/// Many code sends of one project in one statement, after the project's
/// lock (see [`sends_together`] for which): the same probes as one send,
/// each against the rows committed before the batch, and the project limit
/// checked once for all of them with the batch's earliest time, so it
/// refuses at least whatever one-by-one checks would. If it refuses,
/// nothing is written and every send runs on its own. Returns the outcome
/// of each send it wrote or refused, by code id.
pub(crate) async fn send_together(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    otps: &[Arc<NewOtp>],
) -> StoreResult<Vec<(String, StartOutcome)>> {
    let Some(first) = otps.first() else { return Ok(Vec::new()) };
    let limits = first.limits;
    let earliest = otps.iter().map(|o| o.created_at.millis()).min().unwrap_or_default();
    let minute = minute_bucket(earliest);
    let previous_minute_weight = 60_000 - earliest.rem_euclid(60_000);

    let ids: Vec<&str> = otps.iter().map(|o| o.id.as_str()).collect();
    let emails: Vec<&str> = otps.iter().map(|o| o.email.as_str()).collect();
    let code_hashes: Vec<&[u8]> = otps.iter().map(|o| &o.code_hash[..]).collect();
    let targets: Vec<Option<&str>> = otps.iter().map(|o| o.target_public_key.as_deref()).collect();
    let ips: Vec<Option<&str>> = otps.iter().map(|o| o.ip_address.as_deref()).collect();
    let user_agents: Vec<Option<&str>> = otps.iter().map(|o| o.user_agent.as_deref()).collect();
    let created: Vec<i64> = otps.iter().map(|o| o.created_at.millis()).collect();
    let expires: Vec<i64> = otps.iter().map(|o| o.expires_at.millis()).collect();
    let email_ids: Vec<&str> = otps.iter().map(|o| o.email_id.as_str()).collect();
    let payloads: Vec<&[u8]> = otps.iter().map(|o| o.email_payload_sealed.as_slice()).collect();
    let lease_owners: Vec<Option<&str>> =
        otps.iter().map(|o| o.email_lease.as_ref().map(|e| e.owner.as_str())).collect();
    let lease_untils: Vec<Option<i64>> =
        otps.iter().map(|o| o.email_lease.as_ref().map(|e| e.until.millis())).collect();
    let event_ids: Vec<String> = otps.iter().map(|_| EventId::generate().into_string()).collect();

    let (current_sent, room, refused, blocked, window_full, live_full): SendRow = sqlx::query_as(SEND_TOGETHER)
        .persistent(true)
        .bind(project_id.as_str())
        .bind(&ids)
        .bind(&emails)
        .bind(&code_hashes)
        .bind(&targets)
        .bind(&ips)
        .bind(&user_agents)
        .bind(&created)
        .bind(&expires)
        .bind(&email_ids)
        .bind(&payloads)
        .bind(&lease_owners)
        .bind(&lease_untils)
        .bind(&event_ids)
        .bind(minute)
        .bind(previous_minute_weight)
        .bind(i64::try_from(otps.len()).unwrap_or(i64::MAX))
        .bind(limits.per_project_per_minute)
        .bind(limits.window_seconds * 1000)
        .bind(limits.sends_per_email - 1)
        .bind(MAX_OTP_FAILURES)
        .bind(limits.live_codes - 1)
        .bind(EventKind::OtpSent.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if !room {
        return Ok(Vec::new());
    }

    let mut outcomes = Vec::with_capacity(otps.len());
    for otp in otps {
        let Some(at) = refused.iter().position(|id| otp.id.as_str() == id) else {
            outcomes.push((otp.id.to_string(), StartOutcome::Started));
            continue;
        };
        // The same decision as one send on its own (the project had room).
        let probe = OtpProbe {
            blocked_until: blocked.get(at).copied().flatten(),
            window_full: window_full.get(at).copied().flatten(),
            live_full: live_full.get(at).copied().flatten(),
            project_current: 0,
            project_previous: 0,
        };
        let Some((limit, retry_after_seconds)) = otp_limit_reached(probe, otp.limits, otp.created_at) else {
            return Err(StoreError::Corrupt("a refused code send with no full limit".into()));
        };
        insert_event(&mut *tx, otp_rate_limited_event(otp, limit)).await?;
        outcomes.push((otp.id.to_string(), StartOutcome::RateLimited { limit, retry_after_seconds }));
    }
    let admitted = outcomes.iter().any(|(_, o)| *o == StartOutcome::Started);
    if current_sent == 0 && admitted {
        crate::logins::forget_older_counts(tx, project_id, minute).await?;
    }
    Ok(outcomes)
}

/// The verifies a batch can decide together: the first of each code, and
/// only those with no target key given at verify (a session key is
/// registered on the one-by-one path, whose transaction holds the code's
/// lock while it does).
pub(crate) fn verifies_together(registered: &[Arc<VerifyOtp>]) -> Vec<Arc<VerifyOtp>> {
    let mut together: Vec<Arc<VerifyOtp>> = Vec::new();
    for req in registered.iter().filter(|r| r.target_public_key.is_none() && r.session.is_none()) {
        if !together.iter().any(|t| t.otp_id == req.otp_id) {
            together.push(Arc::clone(req));
        }
    }
    together
}

/// [`verify_together`]'s read: each code with its address's block. By id
/// alone, and its project compared in Rust: asked for both, a generic plan
/// made on an empty table probed the address index by project, which on a
/// grown table reads every code of the project.
pub(crate) const READ_TOGETHER: &str = "SELECT o.id, o.project_id, o.email, o.code_hash, o.failures, o.used_at,
        o.expires_at, o.target_public_key, o.ip_address, o.user_agent, b.blocked_until
     FROM UNNEST($1::TEXT[]) AS input(id)
     JOIN otp_codes o ON o.id = input.id
     LEFT JOIN code_budgets b ON b.project_id = o.project_id AND b.email = o.email";

/// A code as [`READ_TOGETHER`] reads it.
type CodeRow = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// [`verify_together`]'s write: the same conditional `UPDATE` as one verify
/// (with the address's block checked again, as of this statement; by id
/// alone, for the reason [`READ_TOGETHER`] gives — its read compared the
/// project, which a code never changes), the
/// address's count of wrong codes cleared, one user per address found or
/// made, and the events.
pub(crate) const CONSUME_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[],
            $8::TEXT[])
          AS t(id, project_id, email, offered_user_id, event_id, now, ip_address, user_agent)),
      used AS (
        UPDATE otp_codes SET used_at = input.now FROM input
        WHERE otp_codes.id = input.id AND otp_codes.used_at IS NULL
          AND otp_codes.failures < $9::BIGINT AND otp_codes.expires_at > input.now
          AND NOT EXISTS (SELECT 1 FROM code_budgets b
                          WHERE b.project_id = input.project_id AND b.email = input.email
                            AND b.blocked_until > input.now)
        RETURNING input.*),
      reset AS (
        DELETE FROM code_budgets b USING used WHERE b.project_id = used.project_id AND b.email = used.email),
      the_users AS (
        INSERT INTO users (id, project_id, email, created_at)
        SELECT DISTINCT ON (project_id, email) offered_user_id, project_id, email, now FROM used
        ORDER BY project_id, email, offered_user_id
        ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
        RETURNING id, project_id, email, created_at),
      recorded AS (
        INSERT INTO events (id, project_id, kind, user_id, otp_id, email, ip_address, user_agent, created_at)
        SELECT used.event_id, used.project_id, $10::TEXT, the_users.id, used.id, used.email, used.ip_address,
            used.user_agent, used.now
        FROM used JOIN the_users USING (project_id, email))
     SELECT used.offered_user_id, used.id, used.project_id, used.email, the_users.id, the_users.created_at
     FROM used JOIN the_users USING (project_id, email)";

/// A code [`CONSUME_TOGETHER`] consumed: the offered user id, the code's id,
/// project and address, and the user's id and creation time.
type ConsumedRow = (String, String, String, String, String, i64);

/// Many code verifies, each of a different code, outside any transaction:
/// one statement reads the codes, Rust decides each as one verify would
/// (`decide_otp`, constant-time), and one statement consumes the codes
/// decided right. Reading without the codes' locks is safe because the
/// consuming `UPDATE` re-checks everything that can change in between
/// (used, locked, expired, the address blocked) and the code's hash cannot
/// change. Returns the verifies it consumed, by offered user id; every other
/// (a wrong code, a code with a target key, one consumed or locked
/// meanwhile) is left to the one-by-one path, which decides and counts it
/// under the code's lock.
pub(crate) async fn verify_together(
    conn: &mut PgConnection,
    reqs: &[Arc<VerifyOtp>],
) -> StoreResult<Vec<(String, OtpVerifyOutcome)>> {
    let ids: Vec<&str> = reqs.iter().map(|r| r.otp_id.as_str()).collect();
    let rows: Vec<CodeRow> =
        sqlx::query_as(READ_TOGETHER).persistent(true).bind(&ids).fetch_all(&mut *conn).await.map_err(db_err)?;

    let mut right = Vec::new();
    for req in reqs {
        // A code of another project is no code here: the one-by-one path says so.
        let Some(row) = rows.iter().find(|row| row.0 == req.otp_id.as_str() && row.1 == req.project_id.as_str()) else {
            continue;
        };
        let (_, _, email, code_hash, failures, used_at, expires_at, target, ip_address, user_agent, blocked_until) =
            row;
        let stored = StoredOtp {
            code_hash,
            failures: *failures,
            used_at: used_at.map(Timestamp),
            expires_at: Timestamp(*expires_at),
            target_public_key: target.as_deref(),
            codes_blocked_until: blocked_until.map(Timestamp),
        };
        if target.is_none() && matches!(decide_otp(stored, &req.code_hash_candidates, None, req.now), Ok(None)) {
            right.push((req, email.as_str(), ip_address.as_deref(), user_agent.as_deref()));
        }
    }
    if right.is_empty() {
        return Ok(Vec::new());
    }

    let ids: Vec<&str> = right.iter().map(|(r, ..)| r.otp_id.as_str()).collect();
    let projects: Vec<&str> = right.iter().map(|(r, ..)| r.project_id.as_str()).collect();
    let emails: Vec<&str> = right.iter().map(|(_, email, ..)| *email).collect();
    let offered: Vec<&str> = right.iter().map(|(r, ..)| r.new_user_id.as_str()).collect();
    let event_ids: Vec<String> = right.iter().map(|_| EventId::generate().into_string()).collect();
    let nows: Vec<i64> = right.iter().map(|(r, ..)| r.now.millis()).collect();
    let ips: Vec<Option<&str>> = right.iter().map(|(_, _, ip, _)| *ip).collect();
    let user_agents: Vec<Option<&str>> = right.iter().map(|(.., ua)| *ua).collect();
    let consumed: Vec<ConsumedRow> = sqlx::query_as(CONSUME_TOGETHER)
        .persistent(true)
        .bind(&ids)
        .bind(&projects)
        .bind(&emails)
        .bind(&offered)
        .bind(&event_ids)
        .bind(&nows)
        .bind(&ips)
        .bind(&user_agents)
        .bind(MAX_OTP_FAILURES)
        .bind(EventKind::OtpVerified.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(consumed
        .into_iter()
        .map(|(offered, otp_id, project_id, email, user_id, user_created_at)| {
            let is_new_user = user_id == offered;
            let user = User {
                id: UserId::from_trusted(user_id),
                project_id: ProjectId::from_trusted(project_id),
                email,
                created_at: Timestamp(user_created_at),
            };
            let verified = VerifiedOtp { otp_id: OtpId::from_trusted(otp_id), user, is_new_user, session: None };
            (offered, OtpVerifyOutcome::Verified(verified))
        })
        .collect())
}
