//! Group commit: writes that arrive together run in one transaction on one
//! connection. Writes go to lanes, each with its own task and connection, so
//! lanes proceed side by side (a lane spends most of its time waiting on
//! round trips to the database, not working). This file knows nothing of
//! what is written: a [`LaneKind`] (see `batch/`) supplies the state its
//! batches share and the statement, if any, that writes a whole batch ahead
//! of its transaction; a write supplies the closure that runs inside it.
//!
//! Why batch: a commit costs a WAL flush and a round trip whatever its
//! size, and writes that queue on one row lock (every start of a project
//! takes its project's row) can never go faster than one flush each when
//! committed one by one. Batched, a flush and a lock acquisition serve a
//! whole batch. A write's result is handed back only after its batch
//! committed.
//!
//! Statements ahead of the transaction ([`Mode::Ahead`]): where one
//! statement can write all of a batch's operations, the lane runs it on its
//! own, outside any transaction, before the batch's transaction: PostgreSQL
//! commits a statement sent outside a transaction when it completes, as
//! durably as a `COMMIT` (`synchronous_commit`), and one statement is
//! all-or-nothing. That is one round trip for the batch instead of three
//! (`BEGIN`, the statement, `COMMIT`). Its operations are answered at once;
//! the others (a refused operation, or all of them if the statement failed)
//! go on in the batch's transaction, on their own paths. A lane that needs
//! its transaction saves the `BEGIN` instead: see [`Mode::Chained`].
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
//!
//! New areas use plain transactions; a lane is for a write whose rate a
//! benchmark showed to need one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use passgate_store::{StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use tokio::sync::{RwLock, mpsc, oneshot};

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 128;

/// How long a lane with nothing to write keeps its connection. Between
/// batches, even under load, a lane's queue is often empty for a moment:
/// giving the connection back each time cost two round trips a batch
/// (the lane's settings made and undone).
const IDLE_LANE_GIVES_BACK: Duration = Duration::from_millis(100);

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a kind of lane saves round trips (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Its batches' transactions follow one another with no `BEGIN` between
    /// them: while more jobs wait, a batch commits with `COMMIT AND CHAIN`,
    /// which begins the next transaction in the same round trip. For a lane
    /// whose batches run one after another on the critical path (each
    /// holding a row lock until its commit), a `BEGIN` was a sixth of a
    /// batch's time at 64 users. A lane with nothing waiting commits
    /// plainly, so it is never left idle inside a transaction.
    Chained,
    /// [`LaneKind::ahead`] writes what it can of a batch in one statement
    /// before the batch's transaction.
    Ahead,
}

/// A kind of write that has lanes of its own.
pub(crate) trait LaneKind: Send + Sync + 'static {
    /// What a batch's jobs share besides the connection: the operations
    /// they register before any job runs, answers written for them ahead,
    /// locks already taken.
    type Batch: Default + Send;

    const MODE: Mode;

    /// With [`Mode::Ahead`]: writes what it can of the registered
    /// operations in one statement outside any transaction, leaving their
    /// answers in the batch. An error means it wrote nothing.
    fn ahead<'c>(&'c self, conn: &'c mut PgConnection, batch: &'c mut Self::Batch) -> BoxFuture<'c, StoreResult<()>>;
}

/// What a job tells its batch before the batch runs (see [`LaneKind::Batch`]).
pub(crate) type Register<K> = Box<dyn Fn(&mut <K as LaneKind>::Batch) + Send>;

/// How a job finds its outcome in what its lane's statement ahead of the
/// transaction wrote; `None` if that statement did not write it.
pub(crate) type Answer<K, R> = Box<dyn Fn(&mut <K as LaneKind>::Batch) -> Option<R> + Send>;

/// A write waiting for its batch: it can run (again, after a rollback),
/// remembers its last outcome, and hands it over once the commit's fate is known.
trait Job<K: LaneKind>: Send {
    /// Tells the batch about the job before any job of the batch runs.
    fn register(&self, batch: &mut K::Batch);
    /// Takes the job's outcome from what the lane's statement ahead of the
    /// transaction wrote, if it wrote the job's; says whether it did.
    fn answer(&mut self, batch: &mut K::Batch) -> bool;
    /// Runs inside the batch's transaction; says whether it succeeded.
    fn run<'c>(&'c mut self, conn: &'c mut PgConnection, batch: &'c mut K::Batch) -> BoxFuture<'c, bool>;
    fn fail(&mut self, error: StoreError);
    /// Sends the outcome, or the commit's error if the commit failed.
    fn deliver(self: Box<Self>, committed: StoreResult<()>);
}

struct Pending<K: LaneKind, R, F> {
    register: Option<Register<K>>,
    answer: Option<Answer<K, R>>,
    write: F,
    outcome: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<K, R, F> Job<K> for Pending<K, R, F>
where
    K: LaneKind,
    R: Send + 'static,
    F: for<'c> Fn(&'c mut PgConnection, &'c mut K::Batch) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
{
    fn register(&self, batch: &mut K::Batch) {
        if let Some(register) = &self.register {
            register(batch);
        }
    }

    fn answer(&mut self, batch: &mut K::Batch) -> bool {
        let Some(answer) = self.answer.as_ref().and_then(|answer| answer(batch)) else { return false };
        self.outcome = Some(Ok(answer));
        true
    }

    fn run<'c>(&'c mut self, conn: &'c mut PgConnection, batch: &'c mut K::Batch) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let outcome = (self.write)(conn, batch).await;
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

type BoxedJob<K> = Box<dyn Job<K>>;

enum Message<K: LaneKind> {
    Write(BoxedJob<K>),
    Close(oneshot::Sender<()>),
}

fn closed() -> StoreError {
    StoreError::database_message("the PostgreSQL writer is closed")
}

/// The plan settings of a lane's session, made when a lane takes a
/// connection from the pool and undone ([`LANE_SETTINGS_RESET`]) before it
/// gives it back, so that other queries never run with them. The lanes'
/// batch statements (see `batch/`) are big; planned on every execution
/// (~0.25 ms each), the verify batch alone took over a tenth of
/// PostgreSQL's CPU at 2,000 logins/s, and PostgreSQL may choose to do so
/// for any statement whose custom plans look cheaper (they see how many
/// rows the arrays hold). The lanes use cached generic plans instead, made
/// with no sequential scan, hash or merge join, so that a plan first made
/// while a table was small (item 8 of bench/NOTES.md) cannot scan the grown
/// table: every lookup in these statements has an index made for it, and
/// their joins match a few rows of `UNNEST`ed input, one index probe each.
///
/// Session settings, not `SET LOCAL` in each transaction: statements ahead
/// of the transaction have none, and four `SET LOCAL`s were parsed and run
/// for every transaction (bench/NOTES.md, item 14).
pub(crate) const LANE_SETTINGS: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
    SET enable_hashjoin = off; SET enable_mergejoin = off";

/// Undoes [`LANE_SETTINGS`]: each back to the session's default.
pub(crate) const LANE_SETTINGS_RESET: &str =
    "RESET plan_cache_mode; RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin";

/// What every lane of a store shares: a gate that tests can close to hold
/// every lane's next batch back (so that writes sent meanwhile gather into
/// one batch), the count of writes sent and not yet taken into a batch, and
/// the count of batches that fell back to running their jobs one by one (a
/// job or a statement ahead failed): answers are the same either way, so
/// only this count shows a batched statement that keeps failing.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    gate: Arc<RwLock<()>>,
    waiting: AtomicUsize,
    fallbacks: AtomicUsize,
}

impl Shared {
    /// Holds every lane's next batch back until the guard is dropped.
    pub(crate) async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        Arc::clone(&self.gate).write_owned().await
    }

    /// Writes sent and not yet taken into a batch.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Batches that ran their jobs one by one after a failure.
    pub(crate) fn fallbacks(&self) -> usize {
        self.fallbacks.load(Ordering::SeqCst)
    }
}

/// The lanes of one kind, held by every clone of the store: writes are
/// spread over them in turn.
pub(crate) struct Lanes<K: LaneKind> {
    lanes: Arc<[mpsc::UnboundedSender<Message<K>>]>,
    next: Arc<AtomicUsize>,
    shared: Arc<Shared>,
}

impl<K: LaneKind> Clone for Lanes<K> {
    fn clone(&self) -> Self {
        Self { lanes: Arc::clone(&self.lanes), next: Arc::clone(&self.next), shared: Arc::clone(&self.shared) }
    }
}

impl<K: LaneKind> std::fmt::Debug for Lanes<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("lanes", &self.lanes.len()).finish_non_exhaustive()
    }
}

impl<K: LaneKind> Lanes<K> {
    /// Starts `count` lanes of `kind`, each a task with a connection of
    /// the pool while it has work.
    pub(crate) fn spawn(pool: &PgPool, kind: Arc<K>, count: usize, shared: Arc<Shared>) -> Self {
        let lanes = (0..count.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), Arc::clone(&kind), receiver, Arc::clone(&shared)));
                sender
            })
            .collect();
        Self { lanes, next: Arc::new(AtomicUsize::new(0)), shared }
    }

    /// Runs `write` inside a lane's next batch transaction (twice if the
    /// batch is rolled back); returns once committed. `register`, if any,
    /// runs first, before any job of the batch (and again before a re-run);
    /// `answer`, if any, then looks for the job's outcome in what the lane's
    /// statement ahead of the transaction wrote, and if it finds it, `write`
    /// does not run.
    pub(crate) async fn write<R, F>(
        &self,
        register: Option<Register<K>>,
        answer: Option<Answer<K, R>>,
        write: F,
    ) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection, &'c mut K::Batch) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: BoxedJob<K> = Box::new(Pending { register, answer, write, outcome: None, reply });
        let lane = &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        if lane.send(Message::Write(job)).is_err() {
            self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(closed());
        }
        outcome.await.map_err(|_| closed())?
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

/// A lane's connection, and whether a transaction is open on it (begun by
/// the last batch's `COMMIT AND CHAIN`).
struct Held {
    conn: PoolConnection<Postgres>,
    in_transaction: bool,
}

async fn run<K: LaneKind>(
    pool: PgPool,
    kind: Arc<K>,
    mut receiver: mpsc::UnboundedReceiver<Message<K>>,
    shared: Arc<Shared>,
) {
    // A busy lane keeps its connection from batch to batch: taking one from
    // the pool per batch would queue the lane behind every read, and cost
    // two round trips for the lane's settings. A lane idle for
    // `IDLE_LANE_GIVES_BACK` gives it back, so lanes never hold on to the
    // pool's connections while there is nothing to write.
    let mut held: Option<Held> = None;
    let mut closing = None;
    while closing.is_none() {
        let next = match held.take() {
            None => receiver.recv().await,
            Some(lane_conn) => match tokio::time::timeout(IDLE_LANE_GIVES_BACK, receiver.recv()).await {
                Ok(next) => {
                    held = Some(lane_conn);
                    next
                }
                Err(_) => {
                    give_back(lane_conn).await;
                    receiver.recv().await
                }
            },
        };
        let Some(first) = next else { break };
        // Uncontended but for tests that hold the lanes back (see `Shared`).
        let _open = shared.gate.read().await;
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => {
                    shared.waiting.fetch_sub(1, Ordering::SeqCst);
                    batch.push(job);
                }
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        let chain = K::MODE == Mode::Chained && closing.is_none() && !receiver.is_empty();
        commit_batch(&pool, kind.as_ref(), &shared, &mut held, batch, chain).await;
    }
    if let Some(lane_conn) = held.take() {
        give_back(lane_conn).await;
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// A pool connection with the lane's settings made. (Boxed futures here and
/// in [`give_back`]: as plain `async fn`s, the compiler cannot prove the
/// lane's task `Send` for every lifetime.)
fn take_from(pool: &PgPool) -> BoxFuture<'_, Result<Held, sqlx::Error>> {
    Box::pin(async move {
        let mut conn = pool.acquire().await?;
        if let Err(e) = conn.execute(LANE_SETTINGS).await {
            discard(conn);
            return Err(e);
        }
        Ok(Held { conn, in_transaction: false })
    })
}

/// Hands a lane's connection back to the pool with no transaction open and
/// without the lane's settings (in that order: a rollback would undo a
/// `RESET` made inside the transaction); closes it if that fails.
fn give_back(mut lane_conn: Held) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let conn = &mut lane_conn.conn;
        let ended = !lane_conn.in_transaction || conn.execute("ROLLBACK").await.is_ok();
        if !ended || conn.execute(LANE_SETTINGS_RESET).await.is_err() {
            discard(lane_conn.conn);
        }
    })
}

/// Closes a lane's connection instead of returning it to the pool: it may be
/// broken, inside a transaction, or still carry the lane's settings.
fn discard(mut conn: PoolConnection<Postgres>) {
    conn.close_on_drop();
}

fn fail_all<K: LaneKind>(batch: Vec<BoxedJob<K>>, error: &StoreError) {
    for mut job in batch {
        job.fail(error.clone());
        job.deliver(Ok(()));
    }
}

fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::database(e)
}

/// Runs a batch on the lane's connection, taking one first if needed;
/// `chain` says whether its commit begins the next transaction.
async fn commit_batch<K: LaneKind>(
    pool: &PgPool,
    kind: &K,
    shared: &Shared,
    held: &mut Option<Held>,
    batch: Vec<BoxedJob<K>>,
    chain: bool,
) {
    if batch.is_empty() {
        return;
    }
    if held.is_none() {
        match take_from(pool).await {
            Ok(lane_conn) => *held = Some(lane_conn),
            Err(e) => return fail_all(batch, &db_error(e)),
        }
    }
    let Some(lane_conn) = held.as_mut() else { return };
    let batch = match K::MODE {
        Mode::Ahead => write_ahead(&mut lane_conn.conn, kind, shared, batch).await,
        Mode::Chained => batch,
    };
    if !batch.is_empty() && !run_batch(lane_conn, shared, batch, chain).await {
        // Most likely the connection broke: the next batch takes a fresh one.
        if let Some(lane_conn) = held.take() {
            discard(lane_conn.conn);
        }
    }
}

/// Runs the lane's statement ahead of the transaction and answers the jobs
/// it wrote; returns the others, for the transaction. If the statement
/// fails, it wrote nothing, and every job goes on to the transaction (where,
/// if the connection broke, they fail with it).
async fn write_ahead<K: LaneKind>(
    conn: &mut PgConnection,
    kind: &K,
    shared: &Shared,
    batch: Vec<BoxedJob<K>>,
) -> Vec<BoxedJob<K>> {
    let mut state = K::Batch::default();
    for job in &batch {
        job.register(&mut state);
    }
    if let Err(e) = kind.ahead(conn, &mut state).await {
        tracing::debug!(error = %e, "a lane's statement ahead of its transaction failed; its jobs run one by one");
        shared.fallbacks.fetch_add(1, Ordering::SeqCst);
        return batch;
    }
    let mut rest = Vec::new();
    for mut job in batch {
        if job.answer(&mut state) {
            job.deliver(Ok(()));
        } else {
            rest.push(job);
        }
    }
    rest
}

/// Runs and commits a batch; says whether the connection still looks usable.
async fn run_batch<K: LaneKind>(
    lane_conn: &mut Held,
    shared: &Shared,
    mut batch: Vec<BoxedJob<K>>,
    chain: bool,
) -> bool {
    if batch.len() > 1 {
        match run_together(lane_conn, &mut batch, chain).await {
            Together::Committed => {
                for job in batch {
                    job.deliver(Ok(()));
                }
                return true;
            }
            Together::CommitFailed(e) => {
                for job in batch {
                    job.deliver(Err(e.clone()));
                }
                return false;
            }
            Together::JobFailed => {
                shared.fallbacks.fetch_add(1, Ordering::SeqCst);
            }
            Together::Broken(e) => {
                fail_all(batch, &e);
                return false;
            }
        }
    }
    // One job, or a batch in which one failed: each in its own transaction.
    let mut usable = true;
    for mut job in batch {
        match run_alone(lane_conn, job.as_mut()).await {
            Ok(()) => job.deliver(Ok(())),
            Err(e) => {
                job.fail(e);
                job.deliver(Ok(()));
                usable = false;
            }
        }
    }
    usable
}

enum Together {
    Committed,
    CommitFailed(StoreError),
    /// A job failed; the batch was rolled back and the connection is fine.
    JobFailed,
    /// The connection failed at BEGIN or ROLLBACK.
    Broken(StoreError),
}

/// Begins a transaction unless the last commit chained one.
async fn begin(lane_conn: &mut Held) -> Result<(), sqlx::Error> {
    if !lane_conn.in_transaction {
        lane_conn.conn.execute("BEGIN").await?;
        lane_conn.in_transaction = true;
    }
    Ok(())
}

/// Ends the open transaction with `statement` (`COMMIT`, `COMMIT AND
/// CHAIN` or `ROLLBACK`). If it fails, the connection is discarded, so
/// whether a transaction is open no longer matters.
async fn end(lane_conn: &mut Held, statement: &'static str) -> Result<(), sqlx::Error> {
    lane_conn.conn.execute(statement).await?;
    lane_conn.in_transaction = statement == "COMMIT AND CHAIN";
    Ok(())
}

async fn run_together<K: LaneKind>(lane_conn: &mut Held, batch: &mut [BoxedJob<K>], chain: bool) -> Together {
    if let Err(e) = begin(lane_conn).await {
        return Together::Broken(db_error(e));
    }
    let mut state = K::Batch::default();
    for job in batch.iter() {
        job.register(&mut state);
    }
    for job in batch.iter_mut() {
        if !job.run(&mut lane_conn.conn, &mut state).await {
            return match end(lane_conn, "ROLLBACK").await {
                Ok(()) => Together::JobFailed,
                Err(e) => Together::Broken(db_error(e)),
            };
        }
    }
    match end(lane_conn, if chain { "COMMIT AND CHAIN" } else { "COMMIT" }).await {
        Ok(()) => Together::Committed,
        Err(e) => {
            tracing::error!(error = %e, "cannot commit a write batch");
            Together::CommitFailed(db_error(e))
        }
    }
}

/// Runs one job in a transaction of its own: `Ok` once it committed, or was
/// rolled back after failing (it keeps its own error); `Err` when beginning
/// or ending the transaction failed.
async fn run_alone<K: LaneKind>(lane_conn: &mut Held, job: &mut dyn Job<K>) -> Result<(), StoreError> {
    begin(lane_conn).await.map_err(db_error)?;
    let mut state = K::Batch::default();
    job.register(&mut state);
    if job.run(&mut lane_conn.conn, &mut state).await {
        // A failed commit fails the job and, like any failed end, discards
        // the connection, whose state is then unknown.
        end(lane_conn, "COMMIT").await.map_err(db_error)
    } else {
        end(lane_conn, "ROLLBACK").await.map_err(db_error)
    }
}
