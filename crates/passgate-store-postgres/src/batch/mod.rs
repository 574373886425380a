//! The hot path's lanes (see `writer.rs`): one kind per write that runs at
//! a login's rate, each with the state its batches share and the
//! statements that write many operations of a batch at once.
//!
//! - [`starts::Starts`]: chained transactions; the first start or code
//!   send of a project in a batch locks the project's row, and the first of
//!   each kind writes those that cannot affect each other's limits in one
//!   statement;
//! - [`verifies::Verifies`]: two lanes; statements ahead of the
//!   transaction consume the batch's link verifies of different tokens and
//!   its code verifies of different codes;
//! - [`deliveries::Deliveries`]: one statement ahead of the transaction
//!   records the batch's delivery outcomes of different emails.
//!
//! [`otp`] holds the statements for one-time codes, used by the first two.
//! The use cases themselves (`logins.rs`, `otp.rs`, `outbox.rs`) send their writes
//! to these lanes and say how each one runs on its own.

pub(crate) mod deliveries;
pub(crate) mod otp;
pub(crate) mod starts;
pub(crate) mod verifies;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deliveries::Deliveries;
use passgate_store::StoreResult;
use sqlx::{Connection, PgConnection, PgPool};
use starts::Starts;
use verifies::Verifies;

use crate::writer::{Lanes, Shared};
use crate::{PgStore, db_err};

/// The operations of one kind in a batch, registered before any job runs,
/// and the answers a statement wrote for them ahead of their own runs.
pub(crate) struct WrittenAhead<T, A> {
    registered: Vec<Arc<T>>,
    /// The scopes (projects) whose operations a statement already covered.
    looked_at: Vec<String>,
    answers: Vec<(String, A)>,
}

impl<T, A> Default for WrittenAhead<T, A> {
    fn default() -> Self {
        Self { registered: Vec::new(), looked_at: Vec::new(), answers: Vec::new() }
    }
}

impl<T, A> WrittenAhead<T, A> {
    pub(crate) fn register(&mut self, operation: Arc<T>) {
        self.registered.push(operation);
    }

    pub(crate) fn registered(&self) -> &[Arc<T>] {
        &self.registered
    }

    /// True the first time it is asked for `scope`.
    pub(crate) fn first_look(&mut self, scope: &str) -> bool {
        if self.looked_at.iter().any(|s| s == scope) {
            return false;
        }
        self.looked_at.push(scope.to_string());
        true
    }

    pub(crate) fn answered(&mut self, answers: impl IntoIterator<Item = (String, A)>) {
        self.answers.extend(answers);
    }

    /// The answer written ahead for `key`, once.
    pub(crate) fn answer(&mut self, key: &str) -> Option<A> {
        let at = self.answers.iter().position(|(k, _)| k == key)?;
        Some(self.answers.swap_remove(at).1)
    }

    /// The answer for `key` of a batch whose first operation in `scope`
    /// writes, with `write`, the operations `pick` says can go together
    /// (when there are at least two); `None` means the operation runs on
    /// its own. `counted` learns how many a statement wrote.
    pub(crate) async fn answer_or_write_together<W>(
        &mut self,
        key: &str,
        scope: &str,
        pick: impl FnOnce(&[Arc<T>]) -> Vec<Arc<T>>,
        counted: &Together,
        write: W,
    ) -> StoreResult<Option<A>>
    where
        W: AsyncFnOnce(Vec<Arc<T>>) -> StoreResult<Vec<(String, A)>>,
    {
        if let Some(answer) = self.answer(key) {
            return Ok(Some(answer));
        }
        if !self.first_look(scope) {
            return Ok(None);
        }
        let together = pick(&self.registered);
        if together.len() < 2 {
            return Ok(None);
        }
        let answers = write(together).await?;
        counted.wrote(answers.len());
        self.answered(answers);
        Ok(self.answer(key))
    }
}

/// The lanes of every kind, and the kinds themselves (which count what
/// their batched statements wrote).
#[derive(Clone, Debug)]
pub(crate) struct HotPath {
    pub(crate) starts: Lanes<Starts>,
    pub(crate) verifies: Lanes<Verifies>,
    pub(crate) code_verifies: Lanes<Verifies>,
    pub(crate) deliveries: Lanes<Deliveries>,
    pub(crate) starts_kind: Arc<Starts>,
    pub(crate) verifies_kind: Arc<Verifies>,
    pub(crate) deliveries_kind: Arc<Deliveries>,
    pub(crate) shared: Arc<Shared>,
}

impl HotPath {
    /// One starts lane, [`verifies::LANES`] verify lanes for links and
    /// [`verifies::CODE_LANES`] for codes, one deliveries lane: at most five
    /// of the pool's connections while all are busy.
    pub(crate) fn spawn(pool: &PgPool) -> Self {
        let shared = Arc::new(Shared::default());
        let (starts_kind, verifies_kind, deliveries_kind) =
            (Arc::new(Starts::default()), Arc::new(Verifies::default()), Arc::new(Deliveries::default()));
        Self {
            starts: Lanes::spawn(pool, Arc::clone(&starts_kind), 1, Arc::clone(&shared)),
            verifies: Lanes::spawn(pool, Arc::clone(&verifies_kind), verifies::LANES, Arc::clone(&shared)),
            code_verifies: Lanes::spawn(pool, Arc::clone(&verifies_kind), verifies::CODE_LANES, Arc::clone(&shared)),
            deliveries: Lanes::spawn(pool, Arc::clone(&deliveries_kind), 1, Arc::clone(&shared)),
            starts_kind,
            verifies_kind,
            deliveries_kind,
            shared,
        }
    }

    /// Finishes the writes already sent; later writes fail.
    pub(crate) async fn close(&self) {
        self.starts.close().await;
        self.deliveries.close().await;
        self.verifies.close().await;
        self.code_verifies.close().await;
    }
}

/// How many operations the lanes wrote with statements that carried more
/// than one: for the test that proves the batched statements run.
#[derive(Debug, Default)]
pub(crate) struct Together(AtomicU64);

impl Together {
    pub(crate) fn wrote(&self, operations: usize) {
        if operations > 1 {
            self.0.fetch_add(u64::try_from(operations).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Operations written by statements that carried several, per lane kind.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchedCounts {
    pub starts: u64,
    pub verifies: u64,
    pub deliveries: u64,
    pub otp_sends: u64,
    pub otp_verifies: u64,
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
        let statements = [
            ("verify_together", verifies::VERIFY_TOGETHER),
            ("record_together", deliveries::RECORD_TOGETHER),
            ("record_one", deliveries::RECORD_ONE),
            ("send_otps_together", otp::SEND_TOGETHER),
            ("read_otps_together", otp::READ_TOGETHER),
            ("consume_otps_together", otp::CONSUME_TOGETHER),
            ("verify_otp_one", crate::otp::READ_ONE),
        ];
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

    /// Operations the lanes wrote with statements that carried several
    /// (for the test that forces batches).
    #[doc(hidden)]
    pub fn batched_counts(&self) -> BatchedCounts {
        BatchedCounts {
            starts: self.lanes.starts_kind.together.get(),
            verifies: self.lanes.verifies_kind.together.get(),
            deliveries: self.lanes.deliveries_kind.together.get(),
            otp_sends: self.lanes.starts_kind.otps_together.get(),
            otp_verifies: self.lanes.verifies_kind.otps_together.get(),
        }
    }

    /// Holds every lane's next batch back until the guard is dropped, so
    /// that writes sent meanwhile gather into one batch (tests only).
    #[doc(hidden)]
    pub async fn hold_writes(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.lanes.shared.hold().await
    }

    /// Writes sent to the lanes and not yet taken into a batch (tests only).
    #[doc(hidden)]
    pub fn writes_waiting(&self) -> usize {
        self.lanes.shared.waiting()
    }

    /// Batches that fell back to running their jobs one by one after a
    /// failure (tests only: held-together writes should cause none).
    #[doc(hidden)]
    pub fn batch_fallbacks(&self) -> usize {
        self.lanes.shared.fallbacks()
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
