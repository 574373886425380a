//! The verify lanes: two lanes; one statement ahead of the transaction
//! (`writer::Mode::Ahead`) consumes the batch's link verifies of different
//! tokens. The rest (a refused verify, the second verify of a token in the
//! batch, or all of them if the statement failed) run on their own, each
//! as `logins.rs` says.
//!
//! Two lanes, not more: unlike starts, which queue on their project's row
//! lock anyway, verifies only wait on round trips; but each lane's batches
//! cost a commit, a WAL flush and an executor start-up whatever their size,
//! and more lanes make smaller batches. At 64 users on 2 cores, four lanes
//! averaged 2.6 verifies a transaction and one lane left the machine idle
//! between round trips; two ran ~20% more logins/s than four
//! (bench/NOTES.md, item 13). Two can deadlock only when the same logins are
//! verified twice at once in crossed order (a replay); PostgreSQL then fails
//! one of the two batches, whose operations run again one by one after the
//! other batch committed.
//!
//! Code verifies have a lane of their own ([`CODE_LANES`]): their batch is
//! two round trips (read the codes, then consume the right ones), so one
//! lane already keeps the database busy while the next batch gathers, and
//! a second only halved the batches. At 64 users on 2 cores, one lane for
//! codes ran 5-12% more logins/s than sharing the two link lanes, and
//! cost the database 12% less CPU a login (bench/NOTES.md, item 22).

use std::sync::Arc;

use passgate_core::{EventId, EventKind, LoginId, ProjectId, Timestamp, UserId};
use passgate_store::{AuthMethod, OtpVerifyOutcome, StoreResult, User, VerifiedLogin, VerifyByToken, VerifyOtp};
use sqlx::PgConnection;

use super::{Together, WrittenAhead, otp};
use crate::db_err;
use crate::writer::{BoxFuture, LaneKind, Mode};

/// How many verify lanes a store runs for links.
pub(crate) const LANES: usize = 2;

/// How many verify lanes a store runs for one-time codes.
pub(crate) const CODE_LANES: usize = 1;

/// The verify lanes' kind.
#[derive(Debug, Default)]
pub(crate) struct Verifies {
    pub(crate) together: Together,
    /// Code verifies written by statements that carried several.
    pub(crate) otps_together: Together,
}

/// What a batch of verifies shares: its link verifies and its one-time
/// code verifies, each answered by the user id it offers (unique per
/// request). Link verifies by code register nothing: they are rare, and
/// each decides in Rust.
#[derive(Default)]
pub(crate) struct VerifiesBatch {
    pub(crate) verifies: WrittenAhead<VerifyByToken, VerifiedLogin>,
    pub(crate) otps: WrittenAhead<VerifyOtp, OtpVerifyOutcome>,
}

impl LaneKind for Verifies {
    type Batch = VerifiesBatch;

    const MODE: Mode = Mode::Ahead;

    /// The batch's link verifies of different tokens in one statement, then
    /// its code verifies of different codes (`batch/otp.rs`).
    fn ahead<'c>(&'c self, conn: &'c mut PgConnection, batch: &'c mut VerifiesBatch) -> BoxFuture<'c, StoreResult<()>> {
        Box::pin(async move {
            let together = verifies_together(batch.verifies.registered());
            if !together.is_empty() {
                let verified = verify_together(conn, &together).await?;
                self.together.wrote(verified.len());
                batch.verifies.answered(verified);
            }
            let codes = otp::verifies_together(batch.otps.registered());
            if !codes.is_empty() {
                // Not `?`: the links above are committed and answered, so
                // an error here must leave only the codes to their own path.
                match otp::verify_together(conn, &codes).await {
                    Ok(verified) => {
                        self.otps_together.wrote(verified.len());
                        batch.otps.answered(verified);
                    }
                    Err(e) => tracing::debug!(error = %e, "the code verifies' statement failed; they run one by one"),
                }
            }
            Ok(())
        })
    }
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
pub(crate) const VERIFY_TOGETHER: &str = "WITH input AS (
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BYTEA[], $4::TEXT[], $5::TEXT[], $6::BIGINT[])
          AS t(offered_user_id, project_id, token_hash, challenge, event_id, now)),
      consumed AS (
        UPDATE logins SET used_at = input.now FROM input
        WHERE logins.token_hash = input.token_hash AND logins.project_id = input.project_id
          AND logins.used_at IS NULL AND logins.burned_at IS NULL AND logins.expires_at > input.now
          AND (logins.code_challenge IS NULL OR logins.code_challenge = input.challenge)
          AND logins.invite_id IS NULL
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
        SELECT consumed.event_id, consumed.project_id, $8, the_users.id, consumed.id,
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
async fn verify_together(
    tx: &mut PgConnection,
    reqs: &[Arc<VerifyByToken>],
) -> StoreResult<Vec<(String, VerifiedLogin)>> {
    let keys: Vec<&str> = reqs.iter().map(|r| r.new_user_id.as_str()).collect();
    let projects: Vec<&str> = reqs.iter().map(|r| r.project_id.as_str()).collect();
    let hashes: Vec<Vec<u8>> = reqs.iter().map(|r| r.token_hash.to_vec()).collect();
    let challenges: Vec<Option<&str>> = reqs.iter().map(|r| r.verifier_challenge.as_deref()).collect();
    let event_ids: Vec<String> = reqs.iter().map(|_| EventId::generate().into_string()).collect();
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
        .bind(EventKind::AuthVerified.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(rows
        .into_iter()
        .map(|(offered, project_id, login_id, email, state, user_id, user_created_at)| {
            let is_new_user = user_id == offered;
            let user = User {
                id: UserId::from_trusted(user_id),
                project_id: ProjectId::from_trusted(project_id),
                email,
                created_at: Timestamp(user_created_at),
            };
            let login_id = LoginId::from_trusted(login_id);
            let verified =
                VerifiedLogin { login_id, user, is_new_user, state, method: AuthMethod::EmailLink, invite: None };
            (offered, verified)
        })
        .collect())
}
