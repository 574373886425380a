//! `Logins` for PostgreSQL. Starts go to the starts lane and link verifies
//! to the verify lanes (see `batch/`), which may write many of them in one
//! statement; what each runs on its own is here. What to do with the rows
//! read is decided by `passgate_core::login` and `passgate_store::shared`.
//!
//! What keeps it correct with many instances on one database:
//! - single use: the conditional `UPDATE … RETURNING` (a concurrent second
//!   UPDATE waits for the first to commit, re-checks `used_at IS NULL`, and
//!   matches nothing);
//! - send limits and idempotency: a start first locks its project's row
//!   (`SELECT … FOR NO KEY UPDATE`), so the count-then-insert of two
//!   instances cannot interleave; a plain row lock, which
//!   PostgreSQL-compatible distributed databases support, rather than an
//!   advisory lock.

use std::sync::Arc;

use passgate_core::constant_time_eq;
use passgate_core::limits::{
    IDEMPOTENCY_WINDOW_SECONDS, MAX_CODE_FAILURES, MAX_VERIFIER_FAILURES, code_block_until, minute_bucket,
};
use passgate_core::login::{CodeLogin, LoginStatus, Refusal, decide_code, lost_race, token_refusal};
use passgate_core::{EventId, EventKind, InviteId, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::shared::{Consumed, LimitProbe, failed_event, limit_reached, rate_limited_event, started_event};
use passgate_store::{
    AuthMethod, EmailStatus, EmailView, IdempotencyClaim, LoginView, Logins, NewLogin, StartOutcome, StoreError,
    StoreResult, User, VerifiedLogin, VerifyByCode, VerifyByToken, VerifyFailure, VerifyOutcome,
};
use sqlx::PgConnection;

use crate::batch::starts::{Starts, lock_project_once, start_together, starts_together};
use crate::batch::verifies::Verifies;
use crate::events::insert_event;
use crate::writer::{Answer, Register};
use crate::{PgStore, db_err};

/// One start on its own, after its project's lock: probes every limit and,
/// if none is reached, inserts the login, its email, the counter and the
/// event (see [`start_together`] for many at once).
pub(crate) async fn start_one(tx: &mut PgConnection, login: &NewLogin) -> StoreResult<StartOutcome> {
    let now = login.created_at;
    let now_ms = now.millis();

    if let Some(claim) = &login.idempotency
        && let Some(repeat) = idempotent_repeat(tx, &login.project_id, claim, now).await?
    {
        return Ok(repeat);
    }

    // One statement, after the lock, so it sees every earlier
    // start: probe every limit and, if none is reached, insert the
    // login, its leased or queued email, the send counter and the
    // auth.started event. Each limit: is there a limit-th most
    // recent send inside the window? If so the window is full, and
    // it frees when that send leaves it. The project's per-minute
    // estimate is `project_minute_limited` (passgate-core) in SQL;
    // which limit it was is decided below, in Rust, from the same figures.
    let limits = login.limits;
    let minute = minute_bucket(now_ms);
    let previous_minute = minute - 1;
    let previous_minute_weight = 60_000 - now_ms.rem_euclid(60_000);
    let event_id = EventId::generate();
    let probe = sqlx::query!(
        r#"WITH probe AS (
                SELECT
                  (SELECT created_at FROM logins WHERE project_id = $2 AND email = $3 AND created_at > $19
                   ORDER BY created_at DESC LIMIT 1 OFFSET $20) AS recipient_full,
                  COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $2 AND minute = $17), 0)
                    AS current_sent,
                  COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $2 AND minute = $21), 0)
                    AS previous_sent,
                  (SELECT created_at FROM logins WHERE project_id = $2 AND ip_network = $27 AND created_at > $22
                   ORDER BY created_at DESC LIMIT 1 OFFSET $23) AS ip_full),
              admitted AS (
                SELECT 1 FROM probe WHERE recipient_full IS NULL AND ip_full IS NULL
                  AND current_sent + previous_sent * $24::BIGINT / 60000 < $25::BIGINT),
              login AS (
                INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
                    validation_url, ip_network, user_agent, created_at, expires_at, invite_id)
                SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::BYTEA, $6::TEXT, $7::TEXT, $8::TEXT,
                    $27::TEXT, $10::TEXT, $11::BIGINT, $12::BIGINT, $28::TEXT FROM admitted),
              email AS (
                INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status,
                    next_attempt_at, lease_owner, lease_until, created_at)
                SELECT $13::TEXT, $2, $1, $3, $14::BYTEA, 'queued', $11, $15::TEXT, $16::BIGINT, $11
                FROM admitted),
              counted AS (
                INSERT INTO project_send_counts (project_id, minute, sent) SELECT $2, $17::BIGINT, 1 FROM admitted
                ON CONFLICT (project_id, minute) DO UPDATE SET sent = project_send_counts.sent + 1),
              started AS (
                INSERT INTO events (id, project_id, kind, login_id, invite_id, email, ip_address, user_agent,
                    created_at)
                SELECT $18::TEXT, $2, $26::TEXT, $1, $28, $3, $9, $10, $11 FROM admitted)
             SELECT recipient_full, current_sent AS "current_sent!", previous_sent AS "previous_sent!", ip_full,
                EXISTS (SELECT 1 FROM admitted) AS "admitted!"
             FROM probe"#,
        login.id.as_str(),
        login.project_id.as_str(),
        login.email,
        &login.token_hash[..],
        login.code_hash.as_ref().map(|h| &h[..]),
        login.code_challenge,
        login.state,
        login.validation_url,
        login.ip_address,
        login.user_agent,
        now_ms,
        login.expires_at.millis(),
        login.email_id.as_str(),
        login.email_payload_sealed,
        login.email_lease.as_ref().map(|l| l.owner.as_str()),
        login.email_lease.as_ref().map(|l| l.until.millis()),
        minute,
        event_id.as_str(),
        now_ms - limits.per_recipient_window_seconds * 1000,
        limits.per_recipient - 1,
        previous_minute,
        now_ms - 60_000,
        limits.per_ip_per_minute - 1,
        previous_minute_weight,
        limits.per_project_per_minute,
        started_event(login).kind.as_str(),
        login.ip_network,
        login.invite_id.as_ref().map(InviteId::as_str)
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;

    if !probe.admitted {
        let figures = LimitProbe {
            recipient_full: probe.recipient_full,
            project_current: probe.current_sent,
            project_previous: probe.previous_sent,
            ip_full: probe.ip_full,
        };
        let Some((limit, retry_after_seconds)) = limit_reached(figures, limits, now) else {
            return Err(StoreError::Corrupt("the send limits' SQL and Rust checks disagree".into()));
        };
        insert_event(&mut *tx, rate_limited_event(login, limit)).await?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }
    if probe.current_sent == 0 {
        forget_older_counts(tx, &login.project_id, minute).await?;
    }
    if let Some(claim) = &login.idempotency {
        remember_answer(tx, &login.project_id, claim, now).await?;
    }
    Ok(StartOutcome::Started)
}

/// The answer to repeat for a request whose `Idempotency-Key` was seen in
/// the last 24 hours: its first answer, or a conflict for another request.
pub(crate) async fn idempotent_repeat(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    claim: &IdempotencyClaim,
    now: Timestamp,
) -> StoreResult<Option<StartOutcome>> {
    let since = now.millis() - IDEMPOTENCY_WINDOW_SECONDS * 1000;
    let previous = sqlx::query!(
        "SELECT fingerprint, response_status, response_body FROM idempotency_keys
             WHERE project_id = $1 AND key = $2 AND created_at > $3",
        project_id.as_str(),
        claim.key,
        since
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(previous.map(|previous| {
        if constant_time_eq(&previous.fingerprint, &claim.fingerprint) {
            StartOutcome::Replayed {
                status: u16::try_from(previous.response_status).unwrap_or(200),
                body: previous.response_body,
            }
        } else {
            StartOutcome::IdempotencyConflict
        }
    }))
}

/// Keeps a request's answer for repeats of its `Idempotency-Key`.
pub(crate) async fn remember_answer(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    claim: &IdempotencyClaim,
    now: Timestamp,
) -> StoreResult<()> {
    let fingerprint = &claim.fingerprint[..];
    let status = i64::from(claim.response_status);
    sqlx::query!(
        "INSERT INTO idempotency_keys (project_id, key, fingerprint, response_status, response_body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (project_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                response_status = excluded.response_status, response_body = excluded.response_body,
                created_at = excluded.created_at",
        project_id.as_str(),
        claim.key,
        fingerprint,
        status,
        claim.response_body,
        now.millis()
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Counts one email (not a link start's, which its own statement counts)
/// against the project's minute; the first of a new minute (`current` was
/// 0) drops the counters no longer needed.
pub(crate) async fn count_project_send(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    now: Timestamp,
    current: i64,
) -> StoreResult<()> {
    let minute = minute_bucket(now.millis());
    sqlx::query!(
        "INSERT INTO project_send_counts (project_id, minute, sent) VALUES ($1, $2, 1)
         ON CONFLICT (project_id, minute) DO UPDATE SET sent = project_send_counts.sent + 1",
        project_id.as_str(),
        minute
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if current == 0 {
        forget_older_counts(tx, project_id, minute).await?;
    }
    Ok(())
}

/// At the first send of a project's `minute`: its counters older than the
/// minute before are no longer read by any limit.
pub(crate) async fn forget_older_counts(tx: &mut PgConnection, project_id: &ProjectId, minute: i64) -> StoreResult<()> {
    sqlx::query!(
        "DELETE FROM project_send_counts WHERE project_id = $1 AND minute < $2",
        project_id.as_str(),
        minute - 1
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Writes what a refusal decided (a failure counted, which may burn the
/// login) and records `auth.failed`; returns the failure to answer.
pub(crate) async fn refuse(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    login_id: Option<&LoginId>,
    refusal: Refusal,
    now: Timestamp,
) -> StoreResult<VerifyOutcome> {
    if let (Some((verifier, code)), Some(login_id)) = (refusal.counted(), login_id) {
        // Either count; reaching its maximum burns the login (the other
        // count is below its own maximum, or the login would be burned).
        sqlx::query!(
            "UPDATE logins SET verifier_failures = verifier_failures + $1, code_failures = code_failures + $2,
                burned_at = CASE WHEN verifier_failures + $1 >= $3 OR code_failures + $2 >= $4 THEN $5 ELSE burned_at END
             WHERE id = $6 AND used_at IS NULL AND burned_at IS NULL",
            verifier,
            code,
            MAX_VERIFIER_FAILURES,
            MAX_CODE_FAILURES,
            now.millis(),
            login_id.as_str()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let failure = refusal.failure();
    insert_event(tx, failed_event(project_id, login_id, failure, now)).await?;
    Ok(VerifyOutcome::Failed(failure))
}

/// When codes for an address are refused until, if they are.
pub(crate) async fn codes_blocked_until(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    email: &str,
) -> StoreResult<Option<Timestamp>> {
    let until = sqlx::query_scalar!(
        "SELECT blocked_until FROM code_budgets WHERE project_id = $1 AND email = $2",
        project_id.as_str(),
        email
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(until.flatten().map(Timestamp))
}

/// Counts a wrong code against its address; at the threshold and beyond,
/// blocks the address's codes (`code_block_until` says how long).
pub(crate) async fn count_code_failure(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    email: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let failures = sqlx::query_scalar!(
        "INSERT INTO code_budgets (project_id, email, failures, updated_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (project_id, email) DO UPDATE SET failures = code_budgets.failures + 1, updated_at = excluded.updated_at
         RETURNING failures",
        project_id.as_str(),
        email,
        now.millis()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(until) = code_block_until(failures, now.millis()) {
        sqlx::query!(
            "UPDATE code_budgets SET blocked_until = $1 WHERE project_id = $2 AND email = $3",
            until,
            project_id.as_str(),
            email
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// A right code: the address's count of wrong ones starts over.
pub(crate) async fn reset_code_failures(tx: &mut PgConnection, project_id: &ProjectId, email: &str) -> StoreResult<()> {
    sqlx::query!("DELETE FROM code_budgets WHERE project_id = $1 AND email = $2", project_id.as_str(), email)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Finds or creates the login's user and records `auth.verified`, in one
/// statement. `DO UPDATE` (a no-op) rather than `DO NOTHING`, so the row
/// comes back even when a concurrent verify created it a moment ago; the
/// user is new exactly when the id that comes back is the one we offered.
pub(crate) async fn finish_verified(
    tx: &mut PgConnection,
    consumed: Consumed,
    new_user_id: &UserId,
    now: Timestamp,
) -> StoreResult<VerifyOutcome> {
    let Consumed { project_id, login_id, email, state, method } = consumed;
    let at = now.millis();
    let event_id = EventId::generate();
    let row = sqlx::query!(
        r#"WITH the_user AS (
            INSERT INTO users (id, project_id, email, created_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
            RETURNING id, created_at),
          verified AS (
            INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
            SELECT $5, $2, $8, the_user.id, $6, $3, $7, $4 FROM the_user)
         SELECT id AS "id!", created_at AS "created_at!" FROM the_user"#,
        new_user_id.as_str(),
        project_id.as_str(),
        email,
        at,
        event_id.as_str(),
        login_id.as_str(),
        method.amr(),
        EventKind::AuthVerified.as_str()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let is_new_user = *new_user_id == row.id.as_str();
    let user = User { id: UserId::from_trusted(row.id), project_id, email, created_at: Timestamp(row.created_at) };
    Ok(VerifyOutcome::Verified(VerifiedLogin { login_id, user, is_new_user, state, method, invite: None }))
}

/// A link verify on its own: not consumed by the lane's statement ahead of
/// the transaction (refused, the second verify of a token in the batch, or
/// the statement failed).
async fn verify_one(tx: &mut PgConnection, req: &VerifyByToken) -> StoreResult<VerifyOutcome> {
    let hash = &req.token_hash[..];
    let now_ms = req.now.millis();
    let event_id = EventId::generate();
    // The single-use guarantee: one conditional UPDATE (a second one waits
    // for the first to commit, re-checks `used_at`, and matches nothing).
    // The login is found by its token's unique index, then updated by its
    // primary key, one value each, so no plan can do better with another
    // index or a scan: plans are cached per connection from the first
    // executions, while the table is young, and one made then (a hash join
    // of the whole table, or a walk of the project's index) stayed —
    // reading every login on every verify. In the same statement, the
    // login's user is found or created and auth.verified recorded
    // (`finish_verified` says why DO UPDATE).
    let verified = sqlx::query!(
        r#"WITH consumed AS (
            UPDATE logins SET used_at = $1
            WHERE id = (SELECT id FROM logins WHERE token_hash = $3)
              AND project_id = $2 AND used_at IS NULL AND burned_at IS NULL
              AND expires_at > $1 AND (code_challenge IS NULL OR code_challenge = $4) AND invite_id IS NULL
            RETURNING id, email, state),
          the_user AS (
            INSERT INTO users (id, project_id, email, created_at) SELECT $5::TEXT, $2, email, $1 FROM consumed
            ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
            RETURNING id, created_at),
          recorded AS (
            INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
            SELECT $6::TEXT, $2, $8::TEXT, the_user.id, consumed.id, consumed.email, $7::TEXT, $1
            FROM consumed, the_user)
         SELECT consumed.id AS "login_id!", consumed.email AS "email!", consumed.state,
            the_user.id AS "user_id!", the_user.created_at AS "user_created_at!"
         FROM consumed, the_user"#,
        now_ms,
        req.project_id.as_str(),
        hash,
        req.verifier_challenge,
        req.new_user_id.as_str(),
        event_id.as_str(),
        AuthMethod::EmailLink.amr(),
        EventKind::AuthVerified.as_str()
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(row) = verified {
        let is_new_user = req.new_user_id == row.user_id.as_str();
        let user = User {
            id: UserId::from_trusted(row.user_id),
            project_id: req.project_id.clone(),
            email: row.email,
            created_at: Timestamp(row.user_created_at),
        };
        return Ok(VerifyOutcome::Verified(VerifiedLogin {
            login_id: LoginId::from_trusted(row.login_id),
            user,
            is_new_user,
            state: row.state,
            method: AuthMethod::EmailLink,
            invite: None,
        }));
    }
    let row = sqlx::query!(
        r#"SELECT id AS "id!", used_at, burned_at, expires_at, invite_id FROM logins
         WHERE project_id = $1 AND token_hash = $2"#,
        req.project_id.as_str(),
        hash
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(invite_id) = row.as_ref().and_then(|r| r.invite_id.clone()) {
        let login_id = LoginId::from_trusted(row.as_ref().map(|r| r.id.clone()).unwrap_or_default());
        return crate::invites::accept_invite(tx, &login_id, &InviteId::from_trusted(invite_id), req).await;
    }
    let login_id = row.as_ref().map(|r| LoginId::from_trusted(r.id.clone()));
    let times = row.map(|r| (r.used_at.map(Timestamp), r.burned_at.map(Timestamp), Timestamp(r.expires_at)));
    refuse(tx, &req.project_id, login_id.as_ref(), token_refusal(times, req.now), req.now).await
}

/// A verify by code, always on its own.
async fn verify_code(tx: &mut PgConnection, req: &VerifyByCode) -> StoreResult<VerifyOutcome> {
    let now_ms = req.now.millis();
    let row = sqlx::query!(
        r#"SELECT id AS "id!", email, state, code_hash, code_challenge, used_at, burned_at, expires_at
         FROM logins WHERE project_id = $1 AND id = $2"#,
        req.project_id.as_str(),
        req.login_id.as_str()
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return refuse(tx, &req.project_id, None, Refusal::Refuse(VerifyFailure::Invalid), req.now).await;
    };
    let login = CodeLogin {
        used_at: row.used_at.map(Timestamp),
        burned_at: row.burned_at.map(Timestamp),
        expires_at: Timestamp(row.expires_at),
        code_hash: row.code_hash.as_deref(),
        code_challenge: row.code_challenge.as_deref(),
        codes_blocked_until: codes_blocked_until(tx, &req.project_id, &row.email).await?,
    };
    if let Err(refusal) = decide_code(login, &req.code_hash_candidates, req.verifier_challenge.as_deref(), req.now) {
        if refusal == Refusal::CountCodeFailure {
            count_code_failure(tx, &req.project_id, &row.email, req.now).await?;
        }
        return refuse(tx, &req.project_id, Some(&req.login_id), refusal, req.now).await;
    }
    // Still one conditional UPDATE decides who wins.
    let consumed = sqlx::query!(
        "UPDATE logins SET used_at = $1
         WHERE id = $2 AND used_at IS NULL AND burned_at IS NULL AND expires_at > $3",
        now_ms,
        req.login_id.as_str(),
        now_ms
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if consumed == 0 {
        // Another verify won the race: report the login as it stands now.
        let used_at = sqlx::query_scalar!("SELECT used_at FROM logins WHERE id = $1", req.login_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .flatten();
        let failure = lost_race(used_at.map(Timestamp));
        return refuse(tx, &req.project_id, Some(&req.login_id), Refusal::Refuse(failure), req.now).await;
    }
    reset_code_failures(tx, &req.project_id, &row.email).await?;
    let consumed = Consumed {
        project_id: req.project_id.clone(),
        login_id: req.login_id.clone(),
        email: row.email,
        state: row.state,
        method: AuthMethod::EmailCode,
    };
    finish_verified(tx, consumed, &req.new_user_id, req.now).await
}

impl Logins for PgStore {
    async fn start_login(&self, login: NewLogin) -> StoreResult<StartOutcome> {
        let login = Arc::new(login);
        let registered = Arc::clone(&login);
        let register: Register<Starts> = Box::new(move |batch| batch.starts.register(Arc::clone(&registered)));
        let kind = Arc::clone(&self.lanes.starts_kind);
        self.lanes
            .starts
            .write(Some(register), None, move |tx, batch| {
                let (login, kind) = (Arc::clone(&login), Arc::clone(&kind));
                Box::pin(async move {
                    lock_project_once(&mut *tx, batch, &login.project_id).await?;
                    // The batch's first start of the project writes the
                    // starts that can go together; the others answer from
                    // its result.
                    let (key, project_id) = (login.id.as_str(), &login.project_id);
                    let pick = |registered: &[Arc<NewLogin>]| starts_together(registered, project_id);
                    let write = async |together: Vec<Arc<NewLogin>>| start_together(tx, project_id, &together).await;
                    let written =
                        batch.starts.answer_or_write_together(key, project_id.as_str(), pick, &kind.together, write);
                    if let Some(outcome) = written.await? {
                        return Ok(outcome);
                    }
                    start_one(&mut *tx, &login).await
                })
            })
            .await
    }

    async fn verify_by_token(&self, req: VerifyByToken) -> StoreResult<VerifyOutcome> {
        let offered_user = req.new_user_id.to_string();
        let req = Arc::new(req);
        let registered = Arc::clone(&req);
        let register: Register<Verifies> = Box::new(move |batch| batch.verifies.register(Arc::clone(&registered)));
        let answer: Answer<Verifies, VerifyOutcome> =
            Box::new(move |batch| batch.verifies.answer(&offered_user).map(VerifyOutcome::Verified));
        self.lanes
            .verifies
            .write(Some(register), Some(answer), move |tx, _| {
                let req = Arc::clone(&req);
                Box::pin(async move { verify_one(tx, &req).await })
            })
            .await
    }

    async fn verify_by_code(&self, req: VerifyByCode) -> StoreResult<VerifyOutcome> {
        let req = Arc::new(req);
        self.lanes
            .verifies
            .write(None, None, move |tx, _| {
                let req = Arc::clone(&req);
                Box::pin(async move { verify_code(tx, &req).await })
            })
            .await
    }

    async fn get_login(
        &self,
        project_id: &ProjectId,
        login_id: &LoginId,
        now: Timestamp,
    ) -> StoreResult<Option<LoginView>> {
        let row = sqlx::query!(
            r#"SELECT l.id AS "id!", l.created_at, l.expires_at, l.used_at, l.burned_at,
                o.status AS "email_status?", o.attempts AS "attempts?", o.last_error
             FROM logins l LEFT JOIN outbox o ON o.login_id = l.id
             WHERE l.project_id = $1 AND l.id = $2"#,
            project_id.as_str(),
            login_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let (used_at, burned_at, expires_at) =
            (r.used_at.map(Timestamp), r.burned_at.map(Timestamp), Timestamp(r.expires_at));
        // A login's email row is written with it, so a missing one means it
        // was never queued yet: show it as queued.
        let email_status =
            r.email_status.as_deref().map(EmailStatus::parse).transpose()?.unwrap_or(EmailStatus::Queued);
        Ok(Some(LoginView {
            id: LoginId::from_trusted(r.id),
            status: LoginStatus::of(used_at, burned_at, expires_at, now),
            email: EmailView { status: email_status, attempts: r.attempts.unwrap_or(0), last_error: r.last_error },
            created_at: Timestamp(r.created_at),
            expires_at,
            verified_at: used_at,
        }))
    }
    async fn forget_dev_logins(&self, project_id: &ProjectId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let id = project_id.as_str();
        // Locked, so the project cannot stop being a dev project meanwhile.
        let is_dev = sqlx::query_scalar!("SELECT is_dev FROM projects WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if is_dev != Some(true) {
            return Err(StoreError::NotFound);
        }
        sqlx::query!("DELETE FROM outbox WHERE project_id = $1 AND status IN ('queued', 'retrying')", id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query!("DELETE FROM idempotency_keys WHERE project_id = $1", id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query!("DELETE FROM project_send_counts WHERE project_id = $1", id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query!("DELETE FROM code_budgets WHERE project_id = $1", id).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query!("DELETE FROM otp_codes WHERE project_id = $1", id).execute(&mut *tx).await.map_err(db_err)?;
        let forgotten = sqlx::query!("DELETE FROM logins WHERE project_id = $1", id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(forgotten)
    }
}
