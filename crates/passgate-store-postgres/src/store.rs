//! `Store` for PostgreSQL: one method, one transaction (or, on the hot
//! path, a part of a group-committed batch that is rolled back and re-run
//! alone if anything in the batch fails, see `writer.rs`), at READ COMMITTED.
//!
//! What keeps it correct with many instances on one database:
//! - single use: the conditional `UPDATE … RETURNING` (a concurrent second
//!   UPDATE waits for the first to commit, re-checks `used_at IS NULL`, and
//!   matches nothing);
//! - send limits and idempotency: `start_login` first locks its project's
//!   row (`SELECT … FOR NO KEY UPDATE`), so the count-then-insert of two instances
//!   cannot interleave; a plain row lock, which PostgreSQL-compatible
//!   distributed databases support, rather than an advisory lock;
//! - the outbox: `FOR UPDATE SKIP LOCKED` hands each due row to one worker.

use passgate_core::ids::IdKind;
use passgate_core::limits::{
    IDEMPOTENCY_WINDOW_SECONDS, MAX_CODE_FAILURES, MAX_VERIFIER_FAILURES, minute_bucket, project_minute_limited,
};
use passgate_core::{Timestamp, constant_time_eq};
use passgate_store::backend::{
    Consumed, DeliveryUpdate, NewEvent, closed_login, from_json, hash32, retry_after, to_json,
};
use passgate_store::*;
use std::sync::Arc;
use std::time::Instant;

use sqlx::{Connection, PgConnection, Postgres, Transaction};

use crate::key_cache::notify_change;
use crate::writer::{Answer, BatchState, BoxFuture, Lane, Register};
use crate::{PgStore, db_err};

/// A connection inside a transaction: the writer's batch (hot path) or a
/// transaction of its own (everything else).
type Tx = PgConnection;

async fn insert_event(tx: &mut Tx, e: NewEvent<'_>) -> StoreResult<()> {
    let id = IdKind::Event.generate();
    let at = e.at.millis();
    sqlx::query!(
        "INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        e.project_id,
        e.kind,
        e.user_id,
        e.login_id,
        e.email,
        e.reason,
        e.ip_address,
        e.user_agent,
        at
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

struct ProjectRow {
    id: String,
    name: String,
    app_name: Option<String>,
    redirect_urls: String,
    allowed_domains: String,
    allowed_emails: String,
    link_ttl_seconds: i64,
    emails_per_minute: i64,
    is_dev: bool,
    created_at: i64,
}

impl ProjectRow {
    fn into_project(self) -> StoreResult<Project> {
        Ok(Project {
            id: self.id,
            settings: ProjectSettings {
                name: self.name,
                app_name: self.app_name,
                redirect_urls: from_json(&self.redirect_urls)?,
                allowed_domains: from_json(&self.allowed_domains)?,
                allowed_emails: from_json(&self.allowed_emails)?,
                link_ttl_seconds: self.link_ttl_seconds,
                emails_per_minute: self.emails_per_minute,
            },
            is_dev: self.is_dev,
            created_at: Timestamp(self.created_at),
        })
    }
}

/// One start on its own, after its project's lock: probes every limit and,
/// if none is reached, inserts the login, its email, the counter and the
/// event (see [`start_together`] for many at once).
async fn start_one(tx: &mut Tx, login: &NewLogin) -> StoreResult<StartOutcome> {
    let now = login.created_at;
    let now_ms = now.millis();

    if let Some(claim) = &login.idempotency {
        let since = now_ms - IDEMPOTENCY_WINDOW_SECONDS * 1000;
        let previous = sqlx::query!(
            "SELECT fingerprint, response_status, response_body FROM idempotency_keys
                 WHERE project_id = $1 AND key = $2 AND created_at > $3",
            login.project_id,
            claim.key,
            since
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(previous) = previous {
            return Ok(if constant_time_eq(&previous.fingerprint, &claim.fingerprint) {
                StartOutcome::Replayed {
                    status: u16::try_from(previous.response_status).unwrap_or(200),
                    body: previous.response_body,
                }
            } else {
                StartOutcome::IdempotencyConflict
            });
        }
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
    let event_id = IdKind::Event.generate();
    let probe = sqlx::query!(
        r#"WITH probe AS (
                SELECT
                  (SELECT created_at FROM logins WHERE project_id = $2 AND email = $3 AND created_at > $19
                   ORDER BY created_at DESC LIMIT 1 OFFSET $20) AS recipient_full,
                  COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $2 AND minute = $17), 0)
                    AS current_sent,
                  COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $2 AND minute = $21), 0)
                    AS previous_sent,
                  (SELECT created_at FROM logins WHERE project_id = $2 AND ip_address = $9 AND created_at > $22
                   ORDER BY created_at DESC LIMIT 1 OFFSET $23) AS ip_full),
              admitted AS (
                SELECT 1 FROM probe WHERE recipient_full IS NULL AND ip_full IS NULL
                  AND current_sent + previous_sent * $24::BIGINT / 60000 < $25::BIGINT),
              login AS (
                INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
                    validation_url, ip_address, user_agent, created_at, expires_at)
                SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BYTEA, $5::BYTEA, $6::TEXT, $7::TEXT, $8::TEXT,
                    $9::TEXT, $10::TEXT, $11::BIGINT, $12::BIGINT FROM admitted),
              email AS (
                INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status,
                    next_attempt_at, lease_owner, lease_until, created_at)
                SELECT $13::TEXT, $2, $1, $3, $14::BYTEA, 'queued', $11, $15::TEXT, $16::BIGINT, $11
                FROM admitted),
              counted AS (
                INSERT INTO project_send_counts (project_id, minute, sent) SELECT $2, $17::BIGINT, 1 FROM admitted
                ON CONFLICT (project_id, minute) DO UPDATE SET sent = project_send_counts.sent + 1),
              started AS (
                INSERT INTO events (id, project_id, kind, login_id, email, ip_address, user_agent, created_at)
                SELECT $18::TEXT, $2, 'auth.started', $1, $3, $9, $10, $11 FROM admitted)
             SELECT recipient_full, current_sent AS "current_sent!", previous_sent AS "previous_sent!", ip_full,
                EXISTS (SELECT 1 FROM admitted) AS "admitted!"
             FROM probe"#,
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
        login.expires_at.millis(),
        login.email_id,
        login.email_payload_sealed,
        login.email_lease.as_ref().map(|l| l.owner.as_str()),
        login.email_lease.as_ref().map(|l| l.until.millis()),
        minute,
        event_id,
        now_ms - limits.per_recipient_window_seconds * 1000,
        limits.per_recipient - 1,
        previous_minute,
        now_ms - 60_000,
        limits.per_ip_per_minute - 1,
        previous_minute_weight,
        limits.per_project_per_minute
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;

    if !probe.admitted {
        let (current, previous) = (probe.current_sent, probe.previous_sent);
        let limited = if let Some(oldest) = probe.recipient_full {
            Some((LimitKind::Recipient, retry_after(oldest, limits.per_recipient_window_seconds, now)))
        } else if let Some(retry) = project_minute_limited(current, previous, now_ms, limits.per_project_per_minute) {
            Some((LimitKind::Project, retry))
        } else {
            probe.ip_full.map(|oldest| (LimitKind::IpAddress, retry_after(oldest, 60, now)))
        };
        let Some((limit, retry_after_seconds)) = limited else {
            return Err(StoreError::Corrupt("the send limits' SQL and Rust checks disagree".into()));
        };
        let mut event = NewEvent::new(&login.project_id, "rate_limited", now);
        event.email = Some(&login.email);
        event.reason = Some(limit.as_str());
        event.ip_address = login.ip_address.as_deref();
        event.user_agent = login.user_agent.as_deref();
        insert_event(&mut *tx, event).await?;
        return Ok(StartOutcome::RateLimited { limit, retry_after_seconds });
    }
    if probe.current_sent == 0 {
        // First send of a new minute: older counters are no longer needed.
        sqlx::query!(
            "DELETE FROM project_send_counts WHERE project_id = $1 AND minute < $2",
            login.project_id,
            previous_minute
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if let Some(claim) = &login.idempotency {
        let fingerprint = &claim.fingerprint[..];
        let status = i64::from(claim.response_status);
        sqlx::query!(
            "INSERT INTO idempotency_keys (project_id, key, fingerprint, response_status, response_body, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (project_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                    response_status = excluded.response_status, response_body = excluded.response_body,
                    created_at = excluded.created_at",
            login.project_id,
            claim.key,
            fingerprint,
            status,
            claim.response_body,
            now_ms
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    Ok(StartOutcome::Started)
}

/// The project's starts that one statement can write with the same
/// result as one statement each, in order: none sends an
/// `Idempotency-Key` (its replay check reads rows an earlier start of
/// the batch may write), all fall in one minute and have the same
/// limits, and no two share a recipient or an IP address — so no start's
/// per-recipient or per-IP probe could see another's row. Whether the
/// project limit has room for all of them is the statement's to check.
/// The rest run one by one after them, and see their rows.
fn starts_together(registered: &[Arc<NewLogin>], project_id: &str) -> Vec<Arc<NewLogin>> {
    let mut together: Vec<Arc<NewLogin>> = Vec::new();
    for login in registered.iter().filter(|l| l.project_id == project_id && l.idempotency.is_none()) {
        if let Some(first) = together.first() {
            let same_minute = minute_bucket(first.created_at.millis()) == minute_bucket(login.created_at.millis());
            let shares_recipient = together.iter().any(|t| t.email == login.email);
            let shares_ip = login.ip_address.is_some() && together.iter().any(|t| t.ip_address == login.ip_address);
            if !same_minute || first.limits != login.limits || shares_recipient || shares_ip {
                continue;
            }
        }
        together.push(Arc::clone(login));
    }
    together
}

/// Many starts of one project in one statement, after the project's lock
/// (see [`starts_together`] for which). The same probes as
/// [`start_one`], each start against the rows committed before the batch;
/// the project limit is checked once for all of them, with the batch's
/// earliest time (the largest share of the previous minute), so it refuses
/// at least whatever one-by-one checks would. If it refuses, nothing is
/// written and every start runs on its own. Returns the outcome of each
/// start it wrote or refused.
async fn start_together(
    tx: &mut Tx,
    project_id: &str,
    logins: &[Arc<NewLogin>],
) -> StoreResult<Vec<(String, StartOutcome)>> {
    let Some(first) = logins.first() else { return Ok(Vec::new()) };
    let limits = first.limits;
    let earliest = logins.iter().map(|l| l.created_at.millis()).min().unwrap_or_default();
    let minute = minute_bucket(earliest);
    let previous_minute_weight = 60_000 - earliest.rem_euclid(60_000);
    let count = i64::try_from(logins.len()).unwrap_or(i64::MAX);

    let ids: Vec<&str> = logins.iter().map(|l| l.id.as_str()).collect();
    let emails: Vec<&str> = logins.iter().map(|l| l.email.as_str()).collect();
    let token_hashes: Vec<Vec<u8>> = logins.iter().map(|l| l.token_hash.to_vec()).collect();
    let code_hashes: Vec<Option<Vec<u8>>> = logins.iter().map(|l| l.code_hash.map(|h| h.to_vec())).collect();
    let challenges: Vec<Option<&str>> = logins.iter().map(|l| l.code_challenge.as_deref()).collect();
    let states: Vec<Option<&str>> = logins.iter().map(|l| l.state.as_deref()).collect();
    let validation_urls: Vec<&str> = logins.iter().map(|l| l.validation_url.as_str()).collect();
    let ips: Vec<Option<&str>> = logins.iter().map(|l| l.ip_address.as_deref()).collect();
    let user_agents: Vec<Option<&str>> = logins.iter().map(|l| l.user_agent.as_deref()).collect();
    let created: Vec<i64> = logins.iter().map(|l| l.created_at.millis()).collect();
    let expires: Vec<i64> = logins.iter().map(|l| l.expires_at.millis()).collect();
    let email_ids: Vec<&str> = logins.iter().map(|l| l.email_id.as_str()).collect();
    let payloads: Vec<&[u8]> = logins.iter().map(|l| l.email_payload_sealed.as_slice()).collect();
    let lease_owners: Vec<Option<&str>> =
        logins.iter().map(|l| l.email_lease.as_ref().map(|e| e.owner.as_str())).collect();
    let lease_untils: Vec<Option<i64>> =
        logins.iter().map(|l| l.email_lease.as_ref().map(|e| e.until.millis())).collect();
    let event_ids: Vec<String> = logins.iter().map(|_| IdKind::Event.generate()).collect();

    let row = sqlx::query!(
        r#"WITH input AS (
            SELECT * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::BYTEA[], $6::TEXT[], $7::TEXT[], $8::TEXT[],
                $9::TEXT[], $10::TEXT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::BYTEA[], $15::TEXT[],
                $16::BIGINT[], $17::TEXT[])
              AS t(id, email, token_hash, code_hash, code_challenge, state, validation_url, ip_address, user_agent,
                created_at, expires_at, email_id, payload_sealed, lease_owner, lease_until, event_id)),
          counts AS (
            SELECT COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $18), 0)
                AS current_sent,
              COALESCE((SELECT sent FROM project_send_counts WHERE project_id = $1 AND minute = $18 - 1), 0)
                AS previous_sent),
          room AS (
            SELECT 1 FROM counts
            WHERE current_sent + previous_sent * $19::BIGINT / 60000 + $20::BIGINT <= $21::BIGINT),
          probe AS MATERIALIZED (
            SELECT input.*,
              (SELECT l.created_at FROM logins l
               WHERE l.project_id = $1 AND l.email = input.email AND l.created_at > input.created_at - $22::BIGINT
               ORDER BY l.created_at DESC LIMIT 1 OFFSET $23) AS recipient_full,
              (SELECT l.created_at FROM logins l
               WHERE l.project_id = $1 AND l.ip_address = input.ip_address AND l.created_at > input.created_at - 60000
               ORDER BY l.created_at DESC LIMIT 1 OFFSET $24) AS ip_full
            FROM input WHERE EXISTS (SELECT 1 FROM room)),
          admitted AS MATERIALIZED (SELECT * FROM probe WHERE recipient_full IS NULL AND ip_full IS NULL),
          login AS (
            INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
                validation_url, ip_address, user_agent, created_at, expires_at)
            SELECT id, $1, email, token_hash, code_hash, code_challenge, state, validation_url, ip_address,
                user_agent, created_at, expires_at
            FROM admitted),
          email AS (
            INSERT INTO outbox (id, project_id, login_id, recipient, payload_sealed, status,
                next_attempt_at, lease_owner, lease_until, created_at)
            SELECT email_id, $1, id, email, payload_sealed, 'queued', created_at, lease_owner, lease_until, created_at
            FROM admitted),
          counted AS (
            INSERT INTO project_send_counts (project_id, minute, sent)
            SELECT $1, $18, COUNT(*) FROM admitted HAVING COUNT(*) > 0
            ON CONFLICT (project_id, minute) DO UPDATE SET sent = project_send_counts.sent + excluded.sent),
          started AS (
            INSERT INTO events (id, project_id, kind, login_id, email, ip_address, user_agent, created_at)
            SELECT event_id, $1, 'auth.started', id, email, ip_address, user_agent, created_at FROM admitted)
         SELECT counts.current_sent AS "current_sent!", EXISTS (SELECT 1 FROM room) AS "room!",
            ARRAY(SELECT id FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL ORDER BY id)
              AS "refused!: Vec<String>",
            ARRAY(SELECT recipient_full FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL
                  ORDER BY id) AS "recipient_full!: Vec<Option<i64>>",
            ARRAY(SELECT ip_full FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL ORDER BY id)
              AS "ip_full!: Vec<Option<i64>>"
         FROM counts"#,
        project_id,
        &ids as &[&str],
        &emails as &[&str],
        &token_hashes,
        &code_hashes as &[Option<Vec<u8>>],
        &challenges as &[Option<&str>],
        &states as &[Option<&str>],
        &validation_urls as &[&str],
        &ips as &[Option<&str>],
        &user_agents as &[Option<&str>],
        &created,
        &expires,
        &email_ids as &[&str],
        &payloads as &[&[u8]],
        &lease_owners as &[Option<&str>],
        &lease_untils as &[Option<i64>],
        &event_ids,
        minute,
        previous_minute_weight,
        count,
        limits.per_project_per_minute,
        limits.per_recipient_window_seconds * 1000,
        limits.per_recipient - 1,
        limits.per_ip_per_minute - 1
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if !row.room {
        return Ok(Vec::new());
    }

    let mut outcomes = Vec::with_capacity(logins.len());
    for login in logins {
        let refused = row.refused.iter().position(|id| *id == login.id);
        let Some(at) = refused else {
            outcomes.push((login.id.clone(), StartOutcome::Started));
            continue;
        };
        let now = login.created_at;
        // The same order of precedence as `start_one` (the project limit had room).
        let (limit, retry_after_seconds) =
            match (row.recipient_full.get(at).copied().flatten(), row.ip_full.get(at).copied().flatten()) {
                (Some(oldest), _) => {
                    (LimitKind::Recipient, retry_after(oldest, limits.per_recipient_window_seconds, now))
                }
                (None, Some(oldest)) => (LimitKind::IpAddress, retry_after(oldest, 60, now)),
                (None, None) => return Err(StoreError::Corrupt("a refused start with no full limit".into())),
            };
        let mut event = NewEvent::new(project_id, "rate_limited", now);
        event.email = Some(&login.email);
        event.reason = Some(limit.as_str());
        event.ip_address = login.ip_address.as_deref();
        event.user_agent = login.user_agent.as_deref();
        insert_event(&mut *tx, event).await?;
        outcomes.push((login.id.clone(), StartOutcome::RateLimited { limit, retry_after_seconds }));
    }
    let admitted = outcomes.iter().any(|(_, o)| *o == StartOutcome::Started);
    if row.current_sent == 0 && admitted {
        // First sends of a new minute: older counters are no longer needed.
        sqlx::query!("DELETE FROM project_send_counts WHERE project_id = $1 AND minute < $2", project_id, minute - 1)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    Ok(outcomes)
}

/// [`record_one`]'s statement: the outcome and its event, if any. A
/// constant, so [`PgStore::lane_plans`] can explain it; its status test names
/// the settled states for the reason given at [`record_together`].
const RECORD_ONE: &str = "WITH settled AS (
        UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = $2,
            next_attempt_at = COALESCE($3, next_attempt_at), settled_at = $4,
            payload_sealed = CASE WHEN $4::BIGINT IS NULL THEN payload_sealed END,
            lease_owner = NULL, lease_until = NULL
        WHERE id = $5 AND lease_owner = $6 AND status NOT IN ('sent', 'failed')
        RETURNING project_id, login_id, recipient),
      recorded AS (
        INSERT INTO events (id, project_id, kind, login_id, email, reason, created_at)
        SELECT $7, project_id, $8, login_id, recipient, $9, $10 FROM settled
        WHERE $8::TEXT IS NOT NULL)
     SELECT COUNT(*) FROM settled";

/// One delivery outcome and its event, if any: one statement.
async fn record_one(tx: &mut Tx, delivery: &PendingDelivery) -> StoreResult<bool> {
    let PendingDelivery { email_id, lease_owner, result } = delivery;
    let update = DeliveryUpdate::of(result);
    let (kind, reason) = update.event.map_or((None, None), |(kind, reason)| (Some(kind), reason));
    let event_id = IdKind::Event.generate();
    let recorded: i64 = sqlx::query_scalar(RECORD_ONE)
        .bind(update.status)
        .bind(update.last_error)
        .bind(update.next_attempt_at)
        .bind(update.settled_at)
        .bind(email_id)
        .bind(lease_owner)
        .bind(&event_id)
        .bind(kind)
        .bind(reason)
        .bind(update.at.millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(recorded == 1)
}

/// A delivery outcome waiting in a write batch.
pub(crate) struct PendingDelivery {
    email_id: String,
    lease_owner: String,
    result: DeliveryResult,
}

/// The batch's outcomes, unless one email comes twice (then none: each is
/// written on its own, in order).
fn deliveries_together(registered: &[Arc<PendingDelivery>]) -> Vec<Arc<PendingDelivery>> {
    let mut ids: Vec<&str> = registered.iter().map(|d| d.email_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() == registered.len() { registered.to_vec() } else { Vec::new() }
}

impl PgStore {
    /// The plans PostgreSQL makes, on this database as it is now, for the
    /// lanes' statements that could scan a growing table, made the way the
    /// lanes make them (`writer::LANE_SETTINGS`): each statement's name and
    /// `EXPLAIN`'s text of its generic plan. Exists for the test that such
    /// plans, made on an empty database, still probe an index per input row
    /// (bench/NOTES.md, items 8 and 13); it runs on a connection of its own,
    /// which it closes, and writes nothing.
    #[doc(hidden)]
    pub async fn lane_plans(&self) -> StoreResult<Vec<(&'static str, String)>> {
        let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await.map_err(db_err)?;
        sqlx::raw_sql(crate::writer::LANE_SETTINGS).execute(&mut conn).await.map_err(db_err)?;
        let mut plans = Vec::new();
        let statements =
            [("verify_together", VERIFY_TOGETHER), ("record_together", RECORD_TOGETHER), ("record_one", RECORD_ONE)];
        for (name, statement) in statements {
            sqlx::raw_sql(&format!("PREPARE {name} AS {statement}")).execute(&mut conn).await.map_err(db_err)?;
            // A generic plan does not depend on the values; NULLs fill every parameter.
            let nulls = vec!["NULL"; parameter_count(statement)].join(", ");
            let explain = format!("EXPLAIN EXECUTE {name}({nulls})");
            let lines: Vec<String> = sqlx::query_scalar(&explain).fetch_all(&mut conn).await.map_err(db_err)?;
            plans.push((name, lines.join("\n")));
        }
        conn.close().await.map_err(db_err)?;
        Ok(plans)
    }
}

/// The highest `$n` in a statement.
fn parameter_count(statement: &str) -> usize {
    statement
        .split('$')
        .skip(1)
        .filter_map(|after| after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// [`record_together`]'s statement (a constant, so [`PgStore::lane_plans`] can explain it).
const RECORD_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[],
            $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[])
          AS t(email_id, lease_owner, status, last_error, next_attempt_at, settled_at, event_id, kind, reason, at)),
      settled AS (
        UPDATE outbox SET status = input.status, attempts = outbox.attempts + 1, last_error = input.last_error,
            next_attempt_at = COALESCE(input.next_attempt_at, outbox.next_attempt_at),
            settled_at = input.settled_at,
            payload_sealed = CASE WHEN input.settled_at IS NULL THEN outbox.payload_sealed END,
            lease_owner = NULL, lease_until = NULL
        FROM input
        WHERE outbox.id = input.email_id AND outbox.lease_owner = input.lease_owner
          AND outbox.status NOT IN ('sent', 'failed')
        RETURNING outbox.id, outbox.project_id, outbox.login_id, outbox.recipient,
            input.event_id, input.kind, input.reason, input.at),
      recorded AS (
        INSERT INTO events (id, project_id, kind, login_id, email, reason, created_at)
        SELECT event_id, project_id, kind, login_id, recipient, reason, at FROM settled WHERE kind IS NOT NULL)
     SELECT id FROM settled";

/// Many delivery outcomes, each of a different email, in one statement:
/// the same conditional update as [`record_one`], row by row. Returns the
/// ids of the emails whose outcome was recorded (the lease still theirs).
///
/// Runs on a cached generic plan (the lane's `LANE_SETTINGS`: no sequential
/// scan, hash or merge join), so the one plan is a primary-key probe per
/// input row. The status test names the settled states, not the pending
/// ones: `status IN ('queued', 'retrying')` is the `outbox_due` index's
/// predicate, and a plan made while the table was young could scan that
/// whole index for every row instead (bench/NOTES.md, items 8 and 13).
async fn record_together(tx: &mut Tx, deliveries: &[Arc<PendingDelivery>]) -> StoreResult<Vec<String>> {
    let updates: Vec<DeliveryUpdate<'_>> = deliveries.iter().map(|d| DeliveryUpdate::of(&d.result)).collect();
    let email_ids: Vec<&str> = deliveries.iter().map(|d| d.email_id.as_str()).collect();
    let owners: Vec<&str> = deliveries.iter().map(|d| d.lease_owner.as_str()).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status).collect();
    let errors: Vec<Option<&str>> = updates.iter().map(|u| u.last_error).collect();
    let next_attempts: Vec<Option<i64>> = updates.iter().map(|u| u.next_attempt_at).collect();
    let settled: Vec<Option<i64>> = updates.iter().map(|u| u.settled_at).collect();
    let event_ids: Vec<String> = updates.iter().map(|_| IdKind::Event.generate()).collect();
    let kinds: Vec<Option<&str>> = updates.iter().map(|u| u.event.map(|(kind, _)| kind)).collect();
    let reasons: Vec<Option<&str>> = updates.iter().map(|u| u.event.and_then(|(_, reason)| reason)).collect();
    let ats: Vec<i64> = updates.iter().map(|u| u.at.millis()).collect();
    let rows = sqlx::query_scalar::<_, String>(RECORD_TOGETHER)
        .persistent(true)
        .bind(&email_ids)
        .bind(&owners)
        .bind(&statuses)
        .bind(&errors)
        .bind(&next_attempts)
        .bind(&settled)
        .bind(&event_ids)
        .bind(&kinds)
        .bind(&reasons)
        .bind(&ats)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(rows)
}

/// The first verify of each token: a second one of the same token must see
/// the first's `used_at`, so it runs on its own, after.
fn verifies_together(registered: &[Arc<VerifyByToken>]) -> Vec<Arc<VerifyByToken>> {
    let mut together: Vec<Arc<VerifyByToken>> = Vec::new();
    for req in registered {
        if !together.iter().any(|t| t.token_hash == req.token_hash) {
            together.push(Arc::clone(req));
        }
    }
    together
}

/// A login [`verify_together`] consumed: the offered user id, the project,
/// the login id, email and state, and the user's id and creation time.
type ConsumedRow = (String, String, String, String, Option<String>, String, i64);

/// [`verify_together`]'s statement (a constant, so [`PgStore::lane_plans`] can explain it).
const VERIFY_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BYTEA[], $4::TEXT[], $5::TEXT[], $6::BIGINT[])
          AS t(offered_user_id, project_id, token_hash, challenge, event_id, now)),
      consumed AS (
        UPDATE logins SET used_at = input.now FROM input
        WHERE logins.token_hash = input.token_hash AND logins.project_id = input.project_id
          AND logins.used_at IS NULL AND logins.burned_at IS NULL AND logins.expires_at > input.now
          AND (logins.code_challenge IS NULL OR logins.code_challenge = input.challenge)
        RETURNING input.offered_user_id, input.project_id, input.event_id, input.now,
            logins.id, logins.email, logins.state),
      the_users AS (
        INSERT INTO users (id, project_id, email, created_at)
        SELECT DISTINCT ON (project_id, email) offered_user_id, project_id, email, now FROM consumed
        ORDER BY project_id, email, offered_user_id
        ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
        RETURNING id, project_id, email, created_at),
      recorded AS (
        INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
        SELECT consumed.event_id, consumed.project_id, 'auth.verified', the_users.id, consumed.id,
            consumed.email, $7, consumed.now
        FROM consumed JOIN the_users USING (project_id, email))
     SELECT consumed.offered_user_id, consumed.project_id, consumed.id, consumed.email, consumed.state,
        the_users.id, the_users.created_at
     FROM consumed JOIN the_users USING (project_id, email)";

/// Many link verifies, each of a different token, in one statement: the
/// same conditional `UPDATE` as one verify (a login is consumed once, and a
/// concurrent second `UPDATE` waits and re-checks), then one user per
/// recipient found or created, then the events. Returns the verifies that
/// consumed their login, by offered user id; the rest are decided one by one.
///
/// The `UPDATE … FROM` joins the logins table, so a plan made while the table
/// was young could scan it; the verify lanes' sessions rule out scans
/// and hash or merge joins (`writer::LANE_SETTINGS`), which leaves one plan:
/// a probe of the token's unique index per input row. So it is prepared
/// once and its generic plan kept (planning it took as long as running it).
async fn verify_together(tx: &mut Tx, reqs: &[Arc<VerifyByToken>]) -> StoreResult<Vec<(String, VerifiedLogin)>> {
    let keys: Vec<&str> = reqs.iter().map(|r| r.new_user_id.as_str()).collect();
    let projects: Vec<&str> = reqs.iter().map(|r| r.project_id.as_str()).collect();
    let hashes: Vec<Vec<u8>> = reqs.iter().map(|r| r.token_hash.to_vec()).collect();
    let challenges: Vec<Option<&str>> = reqs.iter().map(|r| r.verifier_challenge.as_deref()).collect();
    let event_ids: Vec<String> = reqs.iter().map(|_| IdKind::Event.generate()).collect();
    let nows: Vec<i64> = reqs.iter().map(|r| r.now.millis()).collect();
    let rows: Vec<ConsumedRow> = sqlx::query_as(VERIFY_TOGETHER)
        .persistent(true)
        .bind(&keys)
        .bind(&projects)
        .bind(&hashes)
        .bind(&challenges)
        .bind(&event_ids)
        .bind(&nows)
        .bind(AuthMethod::EmailLink.amr())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(offered, project_id, login_id, email, state, user_id, user_created_at)| {
            let is_new_user = user_id == offered;
            let user = User { id: user_id, project_id, email, created_at: Timestamp(user_created_at) };
            let verified = VerifiedLogin { login_id, user, is_new_user, state, method: AuthMethod::EmailLink };
            (offered, verified)
        })
        .collect())
}

/// The verify lanes' statement ahead of their transactions (see
/// `writer`): the batch's verifies of different tokens, in one statement.
pub(crate) fn verify_ahead<'c>(
    conn: &'c mut PgConnection,
    batch: &'c mut BatchState,
) -> BoxFuture<'c, StoreResult<()>> {
    Box::pin(async move {
        let together = verifies_together(batch.verifies.registered());
        if !together.is_empty() {
            let verified = verify_together(conn, &together).await?;
            batch.verifies.answered(verified);
        }
        Ok(())
    })
}

/// The deliveries lane's statement ahead of its transactions (see
/// `writer`): the batch's outcomes, unless one email comes twice, in one
/// statement; each is answered whether it was recorded.
pub(crate) fn record_ahead<'c>(
    conn: &'c mut PgConnection,
    batch: &'c mut BatchState,
) -> BoxFuture<'c, StoreResult<()>> {
    Box::pin(async move {
        let together = deliveries_together(batch.deliveries.registered());
        if !together.is_empty() {
            let recorded = record_together(conn, &together).await?;
            let answers = together.iter().map(|d| (d.email_id.clone(), recorded.contains(&d.email_id)));
            batch.deliveries.answered(answers);
        }
        Ok(())
    })
}

impl PgStore {
    /// An API key and its project, from the database (see [`Store::find_api_key`] for the cache in front).
    async fn read_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<AuthenticatedKey>> {
        let hash = &key_hash[..];
        let Some(r) = sqlx::query!(
            r#"SELECT k.id AS "key_id!", k.key_hash, k.revoked_at,
                p.id AS "id!", p.name, p.app_name, p.redirect_urls, p.allowed_domains, p.allowed_emails,
                p.link_ttl_seconds, p.emails_per_minute, p.is_dev, p.created_at
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
        }
        .into_project()?;
        Ok(Some(AuthenticatedKey {
            key_id: r.key_id,
            key_hash: hash32(r.key_hash)?,
            revoked_at: r.revoked_at.map(Timestamp),
            project,
        }))
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }

    /// Why a login could not be consumed: it is gone, used, burned or
    /// expired — or, when it is none of these, its PKCE challenge was not
    /// answered, which counts as a failed attempt and may burn it.
    async fn classify_failure(
        tx: &mut Tx,
        login_id: &str,
        used_at: Option<i64>,
        burned_at: Option<i64>,
        expires_at: i64,
        now: Timestamp,
    ) -> StoreResult<VerifyFailure> {
        if let Some(closed) = closed_login(used_at, burned_at, expires_at, now) {
            return Ok(closed);
        }
        let at = now.millis();
        sqlx::query!(
            "UPDATE logins SET verifier_failures = verifier_failures + 1,
                burned_at = CASE WHEN verifier_failures + 1 >= $1 THEN $2 ELSE burned_at END
             WHERE id = $3 AND used_at IS NULL AND burned_at IS NULL",
            MAX_VERIFIER_FAILURES,
            at,
            login_id
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        Ok(VerifyFailure::VerifierMismatch)
    }

    async fn record_failure(
        tx: &mut Tx,
        project_id: &str,
        login_id: Option<&str>,
        failure: VerifyFailure,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut event = NewEvent::new(project_id, "auth.failed", now);
        event.login_id = login_id;
        event.reason = Some(failure.reason());
        insert_event(tx, event).await
    }

    /// Finds or creates the login's user and records `auth.verified`, in one
    /// statement. `DO UPDATE` (a no-op) rather than `DO NOTHING`, so the row
    /// comes back even when a concurrent verify created it a moment ago; the
    /// user is new exactly when the id that comes back is the one we offered.
    async fn finish_verified(
        tx: &mut Tx,
        consumed: Consumed,
        new_user_id: &str,
        now: Timestamp,
    ) -> StoreResult<VerifyOutcome> {
        let Consumed { project_id, login_id, email, state, method } = consumed;
        let at = now.millis();
        let event_id = IdKind::Event.generate();
        let row = sqlx::query!(
            r#"WITH the_user AS (
                INSERT INTO users (id, project_id, email, created_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
                RETURNING id, created_at),
              verified AS (
                INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
                SELECT $5, $2, 'auth.verified', the_user.id, $6, $3, $7, $4 FROM the_user)
             SELECT id AS "id!", created_at AS "created_at!" FROM the_user"#,
            new_user_id,
            project_id,
            email,
            at,
            event_id,
            login_id,
            method.amr()
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let is_new_user = row.id == new_user_id;
        let user = User { id: row.id, project_id, email, created_at: Timestamp(row.created_at) };
        Ok(VerifyOutcome::Verified(VerifiedLogin { login_id, user, is_new_user, state, method }))
    }
}

impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await.map_err(|e| StoreError::Database(Box::new(e)))
    }

    async fn close(&self) {
        Self::close(self).await;
    }

    async fn ready(&self) -> StoreResult<()> {
        // The newest table existing means the migrations ran.
        sqlx::query!("SELECT COUNT(*) AS n FROM events WHERE false").fetch_one(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn create_project(&self, project: NewProject, first_key: NewApiKey, if_absent: bool) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let s = &project.settings;
        let (redirects, domains, emails) =
            (to_json(&s.redirect_urls), to_json(&s.allowed_domains), to_json(&s.allowed_emails));
        let created_at = project.created_at.millis();
        let inserted = sqlx::query!(
            "INSERT INTO projects (id, name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
            project.id,
            s.name,
            s.app_name,
            redirects,
            domains,
            emails,
            s.link_ttl_seconds,
            s.emails_per_minute,
            project.is_dev,
            created_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if inserted == 0 && !if_absent {
            return Err(StoreError::Conflict(format!("project {} exists", project.id)));
        }
        let key_hash = &first_key.key_hash[..];
        let key_created = first_key.created_at.millis();
        sqlx::query!(
            "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            first_key.id,
            first_key.project_id,
            key_hash,
            first_key.hint,
            key_created
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_project(&self, id: &str, s: ProjectSettings) -> StoreResult<Project> {
        let mut tx = self.begin().await?;
        let (redirects, domains, emails) =
            (to_json(&s.redirect_urls), to_json(&s.allowed_domains), to_json(&s.allowed_emails));
        let row = sqlx::query_as!(
            ProjectRow,
            "UPDATE projects SET name = $1, app_name = $2, redirect_urls = $3, allowed_domains = $4,
                allowed_emails = $5, link_ttl_seconds = $6, emails_per_minute = $7
             WHERE id = $8
             RETURNING id AS \"id!\", name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at",
            s.name,
            s.app_name,
            redirects,
            domains,
            emails,
            s.link_ttl_seconds,
            s.emails_per_minute,
            id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
        notify_change(&mut tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.keys.invalidate();
        row.into_project()
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>> {
        sqlx::query_as!(
            ProjectRow,
            r#"SELECT id AS "id!", name, app_name, redirect_urls, allowed_domains, allowed_emails,
                link_ttl_seconds, emails_per_minute, is_dev, created_at
             FROM projects WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(ProjectRow::into_project)
        .transpose()
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query!("SELECT id FROM projects WHERE id = $1", key.project_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let key_hash = &key.key_hash[..];
        let created_at = key.created_at.millis();
        sqlx::query!(
            "INSERT INTO api_keys (id, project_id, key_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)",
            key.id,
            key.project_id,
            key_hash,
            key.hint,
            created_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_api_keys(&self, project_id: &str) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", project_id, hint, created_at, revoked_at
             FROM api_keys WHERE project_id = $1 ORDER BY created_at, id"#,
            project_id
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| ApiKeyInfo {
                id: r.id,
                project_id: r.project_id,
                hint: r.hint,
                created_at: Timestamp(r.created_at),
                revoked_at: r.revoked_at.map(Timestamp),
            })
            .collect())
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let at = now.millis();
        let found = sqlx::query!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2", at, key_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        notify_change(&mut tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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

    async fn start_login(&self, login: NewLogin) -> StoreResult<StartOutcome> {
        let login = Arc::new(login);
        let registered = Arc::clone(&login);
        let register: Register = Box::new(move |batch| batch.starts.register(Arc::clone(&registered)));
        self.write(Lane::Starts, Some(register), None, move |tx, batch| {
            let login = Arc::clone(&login);
            Box::pin(async move {
                // Serialise starts per project across every instance: the limit
                // counts and the idempotency check below must see each other's rows.
                // NO KEY UPDATE, not UPDATE: it excludes other starts but not
                // the KEY SHARE locks that every foreign-key check on the
                // project takes (a verify's event insert would otherwise wait
                // for the whole start batch to commit). Once per batch: the
                // lock lasts until the batch commits.
                if !batch.has_locked(&login.project_id) {
                    sqlx::query!("SELECT id FROM projects WHERE id = $1 FOR NO KEY UPDATE", login.project_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .ok_or(StoreError::NotFound)?;
                    batch.locked(&login.project_id);
                }
                // The batch's first start of the project writes the starts
                // that can go together; the others answer from its result.
                if let Some(outcome) = batch.starts.answer(&login.id) {
                    return Ok(outcome);
                }
                if batch.starts.first_look(&login.project_id) {
                    let together = starts_together(batch.starts.registered(), &login.project_id);
                    if together.len() >= 2 {
                        let outcomes = start_together(&mut *tx, &login.project_id, &together).await?;
                        batch.starts.answered(outcomes);
                        if let Some(outcome) = batch.starts.answer(&login.id) {
                            return Ok(outcome);
                        }
                    }
                }
                start_one(&mut *tx, &login).await
            })
        })
        .await
    }

    async fn verify_by_token(&self, req: VerifyByToken) -> StoreResult<VerifyOutcome> {
        let offered_user = req.new_user_id.clone();
        let req = Arc::new(req);
        let registered = Arc::clone(&req);
        let register: Register = Box::new(move |batch| batch.verifies.register(Arc::clone(&registered)));
        let answer: Answer<VerifyOutcome> =
            Box::new(move |batch| batch.verifies.answer(&offered_user).map(VerifyOutcome::Verified));
        self.write(Lane::Verifies, Some(register), Some(answer), move |tx, _| {
            let req = Arc::clone(&req);
            Box::pin(async move {
                // Not consumed by the lane's statement ahead of the
                // transaction (`verify_ahead`): refused, the second verify of
                // a token in the batch, or the statement failed. Decided here,
                // on its own.
                let hash = &req.token_hash[..];
                let now_ms = req.now.millis();
                let event_id = IdKind::Event.generate();
                // The single-use guarantee: one conditional UPDATE (a second
                // one waits for the first to commit, re-checks `used_at`, and
                // matches nothing). The login is found by its token's unique
                // index, then updated by its primary key, one value each, so
                // no plan can do better with another index or a scan: plans
                // are cached per connection from the first executions, while
                // the table is young, and one made then (a hash join of the
                // whole table, or a walk of the project's index) stayed —
                // reading every login on every verify. In the
                // same statement, the login's user is found or created and
                // auth.verified recorded (`finish_verified` says why DO UPDATE).
                let verified = sqlx::query!(
                    r#"WITH consumed AS (
                        UPDATE logins SET used_at = $1
                        WHERE id = (SELECT id FROM logins WHERE token_hash = $3)
                          AND project_id = $2 AND used_at IS NULL AND burned_at IS NULL
                          AND expires_at > $1 AND (code_challenge IS NULL OR code_challenge = $4)
                        RETURNING id, email, state),
                      the_user AS (
                        INSERT INTO users (id, project_id, email, created_at) SELECT $5::TEXT, $2, email, $1 FROM consumed
                        ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
                        RETURNING id, created_at),
                      recorded AS (
                        INSERT INTO events (id, project_id, kind, user_id, login_id, email, reason, created_at)
                        SELECT $6::TEXT, $2, 'auth.verified', the_user.id, consumed.id, consumed.email, $7::TEXT, $1
                        FROM consumed, the_user)
                     SELECT consumed.id AS "login_id!", consumed.email AS "email!", consumed.state,
                        the_user.id AS "user_id!", the_user.created_at AS "user_created_at!"
                     FROM consumed, the_user"#,
                    now_ms,
                    req.project_id,
                    hash,
                    req.verifier_challenge,
                    req.new_user_id,
                    event_id,
                    AuthMethod::EmailLink.amr()
                )
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(row) = verified {
                    let is_new_user = row.user_id == req.new_user_id;
                    let user = User {
                        id: row.user_id,
                        project_id: req.project_id.clone(),
                        email: row.email,
                        created_at: Timestamp(row.user_created_at),
                    };
                    return Ok(VerifyOutcome::Verified(VerifiedLogin {
                        login_id: row.login_id,
                        user,
                        is_new_user,
                        state: row.state,
                        method: AuthMethod::EmailLink,
                    }));
                }
                let row = sqlx::query!(
                    r#"SELECT id AS "id!", used_at, burned_at, expires_at FROM logins WHERE project_id = $1 AND token_hash = $2"#,
                    req.project_id,
                    hash
                )
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let (failure, login_id) = match row {
                    None => (VerifyFailure::Invalid, None),
                    Some(r) => {
                        let f = Self::classify_failure(&mut *tx, &r.id, r.used_at, r.burned_at, r.expires_at, req.now).await?;
                        (f, Some(r.id))
                    }
                };
                Self::record_failure(&mut *tx, &req.project_id, login_id.as_deref(), failure, req.now).await?;
                Ok(VerifyOutcome::Failed(failure))
            })
        })
        .await
    }

    async fn verify_by_code(&self, req: VerifyByCode) -> StoreResult<VerifyOutcome> {
        let req = Arc::new(req);
        self.write(Lane::Verifies, None, None, move |tx, _| {
            let req = Arc::clone(&req);
            Box::pin(async move {
                let now_ms = req.now.millis();
                let row = sqlx::query!(
                    r#"SELECT id AS "id!", email, state, code_hash, code_challenge, used_at, burned_at, expires_at
                     FROM logins WHERE project_id = $1 AND id = $2"#,
                    req.project_id,
                    req.login_id
                )
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let Some(row) = row else {
                    Self::record_failure(&mut *tx, &req.project_id, None, VerifyFailure::Invalid, req.now).await?;
                    return Ok(VerifyOutcome::Failed(VerifyFailure::Invalid));
                };
                let failure = closed_login(row.used_at, row.burned_at, row.expires_at, req.now);
                let failure = match (failure, &row.code_hash) {
                    (Some(f), _) => Some(f),
                    (None, None) => Some(VerifyFailure::CodeInvalid),
                    (None, Some(stored)) => {
                        // Compare against every candidate without stopping early.
                        let matched = req
                            .code_hash_candidates
                            .iter()
                            .fold(false, |acc, candidate| acc | constant_time_eq(candidate, stored));
                        if !matched {
                            sqlx::query!(
                                "UPDATE logins SET code_failures = code_failures + 1,
                                    burned_at = CASE WHEN code_failures + 1 >= $1 THEN $2 ELSE burned_at END
                                 WHERE id = $3 AND used_at IS NULL AND burned_at IS NULL",
                                MAX_CODE_FAILURES,
                                now_ms,
                                row.id
                            )
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
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
                                Some(
                                    Self::classify_failure(&mut *tx, &row.id, None, None, row.expires_at, req.now)
                                        .await?,
                                )
                            }
                        }
                    }
                };
                if let Some(failure) = failure {
                    Self::record_failure(&mut *tx, &req.project_id, Some(&row.id), failure, req.now).await?;
                    return Ok(VerifyOutcome::Failed(failure));
                }
                // Still one conditional UPDATE decides who wins.
                let consumed = sqlx::query!(
                    "UPDATE logins SET used_at = $1
                     WHERE id = $2 AND used_at IS NULL AND burned_at IS NULL AND expires_at > $3",
                    now_ms,
                    row.id,
                    now_ms
                )
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                if consumed == 0 {
                    // Another verify won the race: report the login as it stands now.
                    let used_at = sqlx::query_scalar!("SELECT used_at FROM logins WHERE id = $1", row.id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .flatten();
                    let failure =
                        used_at.map_or(VerifyFailure::Burned, |at| VerifyFailure::Used { used_at: Timestamp(at) });
                    Self::record_failure(&mut *tx, &req.project_id, Some(&row.id), failure, req.now).await?;
                    return Ok(VerifyOutcome::Failed(failure));
                }
                let consumed = Consumed {
                    project_id: req.project_id.clone(),
                    login_id: row.id,
                    email: row.email,
                    state: row.state,
                    method: AuthMethod::EmailCode,
                };
                Self::finish_verified(tx, consumed, &req.new_user_id, req.now).await
            })
        })
        .await
    }

    async fn get_login(&self, project_id: &str, login_id: &str, now: Timestamp) -> StoreResult<Option<LoginView>> {
        let row = sqlx::query!(
            r#"SELECT l.id AS "id!", l.created_at, l.expires_at, l.used_at, l.burned_at,
                o.status AS "email_status?", o.attempts AS "attempts?", o.last_error
             FROM logins l LEFT JOIN outbox o ON o.login_id = l.id
             WHERE l.project_id = $1 AND l.id = $2"#,
            project_id,
            login_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let status = if r.used_at.is_some() {
            LoginStatus::Verified
        } else if r.burned_at.is_some() {
            LoginStatus::Burned
        } else if r.expires_at <= now.millis() {
            LoginStatus::Expired
        } else {
            LoginStatus::Pending
        };
        let email_status = r.email_status.as_deref().and_then(EmailStatus::parse).unwrap_or(EmailStatus::Queued);
        Ok(Some(LoginView {
            id: r.id,
            status,
            email: EmailView { status: email_status, attempts: r.attempts.unwrap_or(0), last_error: r.last_error },
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            verified_at: r.used_at.map(Timestamp),
        }))
    }

    async fn claim_emails(&self, lease: Lease, limit: u32) -> StoreResult<Vec<ClaimedEmail>> {
        let mut tx = self.begin().await?;
        let (now, until) = (lease.now.millis(), lease.until.millis());
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"UPDATE outbox SET lease_owner = $1, lease_until = $2
             WHERE id IN (
                SELECT id FROM outbox
                WHERE status IN ('queued', 'retrying') AND next_attempt_at <= $3
                  AND (lease_until IS NULL OR lease_until <= $4)
                ORDER BY next_attempt_at LIMIT $5
                FOR UPDATE SKIP LOCKED)
             RETURNING id AS "id!", project_id AS "project_id!", login_id, recipient AS "recipient!",
                payload_sealed, attempts AS "attempts!""#,
            lease.owner,
            until,
            now,
            now,
            limit
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                Ok(ClaimedEmail {
                    id: r.id,
                    project_id: r.project_id,
                    login_id: r.login_id,
                    recipient: r.recipient,
                    payload_sealed: r
                        .payload_sealed
                        .ok_or_else(|| StoreError::Corrupt("queued email without payload".into()))?,
                    attempts: r.attempts,
                })
            })
            .collect()
    }

    async fn record_delivery(&self, email_id: &str, lease_owner: &str, result: DeliveryResult) -> StoreResult<bool> {
        let email_id_of_answer = email_id.to_string();
        let delivery =
            Arc::new(PendingDelivery { email_id: email_id.to_string(), lease_owner: lease_owner.to_string(), result });
        let registered = Arc::clone(&delivery);
        let register: Register = Box::new(move |batch| batch.deliveries.register(Arc::clone(&registered)));
        let answer: Answer<bool> = Box::new(move |batch| batch.deliveries.answer(&email_id_of_answer));
        self.write(Lane::Deliveries, Some(register), Some(answer), move |tx, _| {
            let delivery = Arc::clone(&delivery);
            Box::pin(async move {
                // Not written by the lane's statement ahead of the
                // transaction (`record_ahead`): the batch holds this email
                // twice, or the statement failed.
                record_one(&mut *tx, &delivery).await
            })
        })
        .await
    }

    async fn next_email_due(&self) -> StoreResult<Option<Timestamp>> {
        let due = sqlx::query_scalar!(
            r#"SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) AS "due?: i64"
             FROM outbox WHERE status IN ('queued', 'retrying')"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(due.map(Timestamp))
    }

    async fn list_events(&self, project_id: &str, limit: u32) -> StoreResult<Vec<Event>> {
        let limit = i64::from(limit);
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", project_id, kind, user_id, login_id, email, reason, ip_address, user_agent, created_at
             FROM events WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"#,
            project_id,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| Event {
                id: r.id,
                project_id: r.project_id,
                kind: r.kind,
                user_id: r.user_id,
                login_id: r.login_id,
                email: r.email,
                reason: r.reason,
                ip_address: r.ip_address,
                user_agent: r.user_agent,
                created_at: Timestamp(r.created_at),
            })
            .collect())
    }
}
