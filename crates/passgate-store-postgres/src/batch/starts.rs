//! The starts lane: one lane, chained transactions (`writer::Mode::Chained`),
//! for every write that sends an email at a login's rate: link starts and
//! one-time code sends. Every one takes its project's row lock (so limits
//! hold across instances) and keeps it until its batch commits; the first
//! of a project in a batch takes it for all of them, and the first of each
//! kind writes those of its kind that cannot affect each other's limits in
//! one statement (`batch/otp.rs` for codes).

use std::sync::Arc;

use passgate_core::limits::minute_bucket;
use passgate_core::{EventId, EventKind, ProjectId};
use passgate_store::shared::{LimitProbe, limit_reached, rate_limited_event};
use passgate_store::{NewLogin, NewOtp, StartOutcome, StoreError, StoreResult};
use sqlx::PgConnection;

use super::{Together, WrittenAhead};
use crate::db_err;
use crate::events::insert_event;
use crate::projects::lock_project;
use crate::writer::{BoxFuture, LaneKind, Mode};

/// The starts lane's kind.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    pub(crate) together: Together,
    /// Code sends written by statements that carried several.
    pub(crate) otps_together: Together,
}

/// What a batch of starts shares.
#[derive(Default)]
pub(crate) struct StartsBatch {
    /// The projects whose row the batch's transaction has locked already, so
    /// a start of the same project does not ask again (a round trip per start).
    locked_projects: Vec<ProjectId>,
    /// The batch's starts, answered by login id.
    pub(crate) starts: WrittenAhead<NewLogin, StartOutcome>,
    /// The batch's one-time code sends, answered by code id.
    pub(crate) otps: WrittenAhead<NewOtp, StartOutcome>,
}

/// Serialises a project's sends across every instance (see
/// [`lock_project`]). Once per batch: the lock lasts until the batch commits.
pub(crate) async fn lock_project_once(
    tx: &mut PgConnection,
    batch: &mut StartsBatch,
    project_id: &ProjectId,
) -> StoreResult<()> {
    if batch.locked_projects.contains(project_id) {
        return Ok(());
    }
    lock_project(tx, project_id).await?;
    batch.locked_projects.push(project_id.clone());
    Ok(())
}

impl LaneKind for Starts {
    type Batch = StartsBatch;

    const MODE: Mode = Mode::Chained;

    fn ahead<'c>(&'c self, _: &'c mut PgConnection, _: &'c mut StartsBatch) -> BoxFuture<'c, StoreResult<()>> {
        // Starts need their transaction: the project's lock must be held
        // before the statement takes its snapshot.
        Box::pin(async { Ok(()) })
    }
}

/// The project's starts that one statement can write with the same
/// result as one statement each, in order: none sends an
/// `Idempotency-Key` (its replay check reads rows an earlier start of
/// the batch may write), all fall in one minute and have the same
/// limits, and no two share a recipient or an IP address — so no start's
/// per-recipient or per-IP probe could see another's row. Whether the
/// project limit has room for all of them is the statement's to check.
/// The rest run one by one after them, and see their rows.
pub(crate) fn starts_together(registered: &[Arc<NewLogin>], project_id: &ProjectId) -> Vec<Arc<NewLogin>> {
    let mut together: Vec<Arc<NewLogin>> = Vec::new();
    for login in registered.iter().filter(|l| l.project_id == *project_id && l.idempotency.is_none()) {
        if let Some(first) = together.first() {
            let same_minute = minute_bucket(first.created_at.millis()) == minute_bucket(login.created_at.millis());
            let shares_recipient = together.iter().any(|t| t.email == login.email);
            let shares_ip = login.ip_network.is_some() && together.iter().any(|t| t.ip_network == login.ip_network);
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
pub(crate) async fn start_together(
    tx: &mut PgConnection,
    project_id: &ProjectId,
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
    let networks: Vec<Option<&str>> = logins.iter().map(|l| l.ip_network.as_deref()).collect();
    let user_agents: Vec<Option<&str>> = logins.iter().map(|l| l.user_agent.as_deref()).collect();
    let created: Vec<i64> = logins.iter().map(|l| l.created_at.millis()).collect();
    let expires: Vec<i64> = logins.iter().map(|l| l.expires_at.millis()).collect();
    let email_ids: Vec<&str> = logins.iter().map(|l| l.email_id.as_str()).collect();
    let payloads: Vec<&[u8]> = logins.iter().map(|l| l.email_payload_sealed.as_slice()).collect();
    let lease_owners: Vec<Option<&str>> =
        logins.iter().map(|l| l.email_lease.as_ref().map(|e| e.owner.as_str())).collect();
    let lease_untils: Vec<Option<i64>> =
        logins.iter().map(|l| l.email_lease.as_ref().map(|e| e.until.millis())).collect();
    let event_ids: Vec<String> = logins.iter().map(|_| EventId::generate().into_string()).collect();

    let row = sqlx::query!(
        r#"WITH input AS (
            SELECT * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::BYTEA[], $6::TEXT[], $7::TEXT[], $8::TEXT[],
                $9::TEXT[], $10::TEXT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::BYTEA[], $15::TEXT[],
                $16::BIGINT[], $17::TEXT[], $26::TEXT[])
              AS t(id, email, token_hash, code_hash, code_challenge, state, validation_url, ip_address, user_agent,
                created_at, expires_at, email_id, payload_sealed, lease_owner, lease_until, event_id, ip_network)),
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
               WHERE l.project_id = $1 AND l.ip_network = input.ip_network AND l.created_at > input.created_at - 60000
               ORDER BY l.created_at DESC LIMIT 1 OFFSET $24) AS ip_full
            FROM input WHERE EXISTS (SELECT 1 FROM room)),
          admitted AS MATERIALIZED (SELECT * FROM probe WHERE recipient_full IS NULL AND ip_full IS NULL),
          login AS (
            INSERT INTO logins (id, project_id, email, token_hash, code_hash, code_challenge, state,
                validation_url, ip_network, user_agent, created_at, expires_at)
            SELECT id, $1, email, token_hash, code_hash, code_challenge, state, validation_url, ip_network,
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
            SELECT event_id, $1, $25::TEXT, id, email, ip_address, user_agent, created_at FROM admitted)
         SELECT counts.current_sent AS "current_sent!", EXISTS (SELECT 1 FROM room) AS "room!",
            ARRAY(SELECT id FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL ORDER BY id)
              AS "refused!: Vec<String>",
            ARRAY(SELECT recipient_full FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL
                  ORDER BY id) AS "recipient_full!: Vec<Option<i64>>",
            ARRAY(SELECT ip_full FROM probe WHERE recipient_full IS NOT NULL OR ip_full IS NOT NULL ORDER BY id)
              AS "ip_full!: Vec<Option<i64>>"
         FROM counts"#,
        project_id.as_str(),
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
        limits.per_ip_per_minute - 1,
        EventKind::AuthStarted.as_str(),
        &networks as &[Option<&str>]
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if !row.room {
        return Ok(Vec::new());
    }

    let mut outcomes = Vec::with_capacity(logins.len());
    for login in logins {
        let refused = row.refused.iter().position(|id| login.id == id.as_str());
        let Some(at) = refused else {
            outcomes.push((login.id.to_string(), StartOutcome::Started));
            continue;
        };
        // The same decision as one start on its own (the project limit had room).
        let probe = LimitProbe {
            recipient_full: row.recipient_full.get(at).copied().flatten(),
            ip_full: row.ip_full.get(at).copied().flatten(),
            ..LimitProbe::default()
        };
        let Some((limit, retry_after_seconds)) = limit_reached(probe, login.limits, login.created_at) else {
            return Err(StoreError::Corrupt("a refused start with no full limit".into()));
        };
        insert_event(&mut *tx, rate_limited_event(login, limit)).await?;
        outcomes.push((login.id.to_string(), StartOutcome::RateLimited { limit, retry_after_seconds }));
    }
    let admitted = outcomes.iter().any(|(_, o)| *o == StartOutcome::Started);
    if row.current_sent == 0 && admitted {
        crate::logins::forget_older_counts(tx, project_id, minute).await?;
    }
    Ok(outcomes)
}
