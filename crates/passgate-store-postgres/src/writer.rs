//! Group commit for the hot path: the writes of logins that arrive together
//! run in one transaction on one connection. There are lanes per kind of
//! write — one for starts, one for delivery outcomes, several for verifies —
//! each with its own task and connection, so they proceed side by side (a
//! lane spends most of its time waiting on round trips to the database, not
//! working).
//!
//! Lanes of different kinds never wait on each other's locks: starts lock
//! their project (`FOR NO KEY UPDATE`, which foreign-key checks do not wait
//! for) and insert new rows; verifies lock existing logins and users;
//! outcomes lock outbox rows.
//!
//! Why: every start takes its project's row lock (so limits hold across
//! instances) and holds it through its commit's WAL flush, so starts of one
//! project committed one by one can never go faster than one flush each.
//! Batched, a flush and a lock acquisition serve a whole batch. A job's
//! result is handed back only after the batch's `COMMIT` returned.
//!
//! Optimistic batches: a batch runs its jobs back to back with no savepoint
//! between them (a savepoint per job was a round trip per job, and more
//! than 64 of them in one transaction overflow PostgreSQL's per-backend
//! subtransaction cache, which slows every other backend's snapshots).
//! Jobs fail only on database errors (a refused login is a result, not an
//! error), so when one does, the batch is rolled back and its jobs run again
//! each in a transaction of its own — which is why a job must be callable
//! twice. Several instances still exclude each other through the same row
//! locks, batch by batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use passgate_store::{StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use crate::db_err;

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 128;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a batch's jobs share besides the connection: the projects whose
/// row the batch's transaction has locked already, so a start of the same
/// project does not ask again (a round trip per start), and the batch's
/// starts, delivery outcomes and link verifies, registered before any job
/// runs, so that the first of each kind can write the others with it in one
/// statement.
#[derive(Default)]
pub(crate) struct BatchState {
    locked_projects: Vec<String>,
    /// Answered by login id.
    pub(crate) starts: WrittenAhead<passgate_store::NewLogin, passgate_store::StartOutcome>,
    /// Answered by email id: whether the outcome was recorded.
    pub(crate) deliveries: WrittenAhead<crate::store::PendingDelivery, bool>,
    /// Answered by the user id each verify offers (unique per request).
    pub(crate) verifies: WrittenAhead<passgate_store::VerifyByToken, passgate_store::VerifiedLogin>,
}

/// The operations of one kind in a batch, registered before any job runs,
/// and the answers the first of them wrote ahead for the others.
pub(crate) struct WrittenAhead<T, A> {
    registered: Vec<Arc<T>>,
    /// What a statement already covered: a project for starts, the whole
    /// batch (`""`) for the others.
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
}

impl BatchState {
    pub(crate) fn has_locked(&self, project_id: &str) -> bool {
        self.locked_projects.iter().any(|p| p == project_id)
    }

    pub(crate) fn locked(&mut self, project_id: &str) {
        self.locked_projects.push(project_id.to_string());
    }
}

/// A write waiting for its batch: it can run (again, after a rollback),
/// remembers its last outcome, and hands it over once the commit's fate is known.
trait Job: Send {
    /// Tells the batch about the job before any job of the batch runs.
    fn register(&self, state: &mut BatchState);
    /// Runs inside the batch's transaction; says whether it succeeded.
    fn run<'c>(&'c mut self, conn: &'c mut PgConnection, state: &'c mut BatchState) -> BoxFuture<'c, bool>;
    fn fail(&mut self, error: StoreError);
    /// Sends the outcome, or the commit's error if the commit failed.
    fn deliver(self: Box<Self>, committed: StoreResult<()>);
}

/// What a job tells its batch before the batch runs (see [`BatchState`]).
pub(crate) type Register = Box<dyn Fn(&mut BatchState) + Send>;

struct Pending<R, F> {
    register: Option<Register>,
    write: F,
    outcome: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send + 'static,
    F: for<'c> Fn(&'c mut PgConnection, &'c mut BatchState) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
{
    fn register(&self, state: &mut BatchState) {
        if let Some(register) = &self.register {
            register(state);
        }
    }

    fn run<'c>(&'c mut self, conn: &'c mut PgConnection, state: &'c mut BatchState) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let outcome = (self.write)(conn, state).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn deliver(self: Box<Self>, committed: StoreResult<()>) {
        let outcome = self.outcome.unwrap_or_else(|| Err(closed()));
        let _ = self.reply.send(committed.and(outcome));
    }
}

type BoxedJob = Box<dyn Job>;

enum Message {
    Write(BoxedJob),
    Close(oneshot::Sender<()>),
}

fn closed() -> StoreError {
    StoreError::Database("the PostgreSQL writer is closed".into())
}

/// Which lane a write takes (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lane {
    Starts,
    Verifies,
    Deliveries,
}

/// How the transactions of every lane begin. Their batch
/// statements (`store::start_together`, `store::verify_together`,
/// `store::record_together`) are big;
/// planned on every execution (~0.25 ms each), the verify batch alone took
/// over a tenth of PostgreSQL's CPU at 2,000 logins/s, and PostgreSQL may
/// choose to do so for any statement whose custom plans look cheaper (they
/// see how many rows the arrays hold). These lanes use cached generic
/// plans instead, made with no sequential scan, hash or merge join, so that
/// a plan first made while `logins` was small (item 8 of bench/NOTES.md)
/// cannot scan the grown table: every lookup in these statements has an
/// index made for it, and their joins match a few rows of `UNNEST`ed input,
/// one index probe each.
pub(crate) const BEGIN_INDEXED: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
    SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// Verifies get several lanes: unlike starts, which queue on their
/// project's row lock anyway, they only wait on round trips. Two of them can
/// deadlock only when the same logins are verified twice at once in crossed
/// order (a replay); PostgreSQL then fails one of the two batches, whose
/// operations run again one by one after the other batch committed.
///
/// Two, not more: each lane's transactions cost a `BEGIN`, a `COMMIT`, a
/// WAL flush and an executor start-up whatever their size, and more lanes
/// make smaller batches. At 64 users on 2 cores, four lanes averaged 2.6
/// verifies a transaction and one lane left the machine idle between
/// round trips; two ran ~20% more logins/s than four (bench/NOTES.md, item 13).
const VERIFY_LANES: usize = 2;

/// Where each kind's lanes sit in [`Writer::lanes`].
const STARTS_LANE: usize = 0;
const DELIVERIES_LANE: usize = 1;
const FIRST_VERIFY_LANE: usize = 2;

/// The sending sides, held by every clone of the store.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    /// Starts, deliveries, then the verify lanes.
    lanes: Arc<[mpsc::UnboundedSender<Message>]>,
    next_verify: Arc<AtomicUsize>,
}

impl Writer {
    pub(crate) fn spawn(pool: &PgPool) -> Self {
        let lanes = (0..FIRST_VERIFY_LANE + VERIFY_LANES)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), receiver, BEGIN_INDEXED));
                sender
            })
            .collect();
        Self { lanes, next_verify: Arc::new(AtomicUsize::new(0)) }
    }

    fn lane(&self, lane: Lane) -> &mpsc::UnboundedSender<Message> {
        let index = match lane {
            Lane::Starts => STARTS_LANE,
            Lane::Deliveries => DELIVERIES_LANE,
            Lane::Verifies => FIRST_VERIFY_LANE + self.next_verify.fetch_add(1, Ordering::Relaxed) % VERIFY_LANES,
        };
        &self.lanes[index]
    }

    /// Runs `write` inside the lane's next batch transaction (twice if the
    /// batch is rolled back); returns once committed. `register`, if any,
    /// runs first, before any job of the batch (and again before a re-run).
    pub(crate) async fn write<R, F>(&self, lane: Lane, register: Option<Register>, write: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection, &'c mut BatchState) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: BoxedJob = Box::new(Pending { register, write, outcome: None, reply });
        self.lane(lane).send(Message::Write(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Finishes the jobs already sent; later writes fail.
    pub(crate) async fn close(&self) {
        for lane in self.lanes.iter() {
            let (done, wait) = oneshot::channel();
            if lane.send(Message::Close(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }
}

async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Message>, begin: &'static str) {
    // A busy lane keeps its connection from batch to batch: taking one from
    // the pool per batch would queue the lane behind every read. An idle
    // lane gives it back, so lanes never starve reads, whatever the pool's size.
    let mut held = None;
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = receiver.recv().await else { break };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => batch.push(job),
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        commit_batch(&pool, &mut held, batch, begin).await;
        if receiver.is_empty() {
            held = None;
        }
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn fail_all(batch: Vec<BoxedJob>, message: &str) {
    for mut job in batch {
        job.fail(StoreError::Database(message.to_string().into()));
        job.deliver(Ok(()));
    }
}

async fn commit_batch(
    pool: &PgPool,
    held: &mut Option<PoolConnection<Postgres>>,
    batch: Vec<BoxedJob>,
    begin: &'static str,
) {
    if batch.is_empty() {
        return;
    }
    if held.is_none() {
        match pool.acquire().await {
            Ok(conn) => *held = Some(conn),
            Err(e) => return fail_all(batch, &e.to_string()),
        }
    }
    let Some(conn) = held.as_mut() else { return };
    if !run_batch(conn, batch, begin).await {
        // Most likely the connection broke: the next batch takes a fresh one.
        *held = None;
    }
}

/// Runs and commits a batch; says whether the connection still looks usable.
async fn run_batch(conn: &mut PgConnection, mut batch: Vec<BoxedJob>, begin: &'static str) -> bool {
    if batch.len() > 1 {
        match run_together(conn, &mut batch, begin).await {
            Together::Committed => {
                for job in batch {
                    job.deliver(Ok(()));
                }
                return true;
            }
            Together::CommitFailed(e) => {
                for job in batch {
                    job.deliver(Err(StoreError::Database(e.clone().into())));
                }
                return false;
            }
            Together::JobFailed => {}
            Together::Broken(e) => {
                fail_all(batch, &e);
                return false;
            }
        }
    }
    // One job, or a batch in which one failed: each in its own transaction.
    let mut usable = true;
    for mut job in batch {
        match run_alone(conn, job.as_mut(), begin).await {
            Ok(committed) => job.deliver(committed),
            Err(e) => {
                job.fail(StoreError::Database(e.clone().into()));
                job.deliver(Ok(()));
                usable = false;
            }
        }
    }
    usable
}

enum Together {
    Committed,
    CommitFailed(String),
    /// A job failed; the batch was rolled back and the connection is fine.
    JobFailed,
    /// The connection failed at BEGIN or ROLLBACK.
    Broken(String),
}

async fn run_together(conn: &mut PgConnection, batch: &mut [BoxedJob], begin: &'static str) -> Together {
    let mut tx = match conn.begin_with(begin).await {
        Ok(tx) => tx,
        Err(e) => return Together::Broken(e.to_string()),
    };
    let mut state = BatchState::default();
    for job in batch.iter() {
        job.register(&mut state);
    }
    for job in batch.iter_mut() {
        if !job.run(&mut tx, &mut state).await {
            return match tx.rollback().await {
                Ok(()) => Together::JobFailed,
                Err(e) => Together::Broken(e.to_string()),
            };
        }
    }
    match tx.commit().await {
        Ok(()) => Together::Committed,
        Err(e) => {
            tracing::error!(error = %e, "cannot commit a write batch");
            Together::CommitFailed(e.to_string())
        }
    }
}

/// Runs one job in a transaction of its own: `Ok` with the commit's fate
/// (a failed job is rolled back and keeps its own error), `Err` when the
/// connection failed.
async fn run_alone(conn: &mut PgConnection, job: &mut dyn Job, begin: &'static str) -> Result<StoreResult<()>, String> {
    let mut tx = conn.begin_with(begin).await.map_err(|e| e.to_string())?;
    let mut state = BatchState::default();
    job.register(&mut state);
    if job.run(&mut tx, &mut state).await {
        Ok(tx.commit().await.map_err(db_err))
    } else {
        tx.rollback().await.map_err(|e| e.to_string())?;
        Ok(Ok(()))
    }
}
