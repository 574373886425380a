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
//! result is handed back only after its batch committed.
//!
//! Statements ahead of the transaction: where one statement can write all
//! of a batch's operations of a kind (the verifies of different tokens, the
//! outcomes of different emails), the lane runs it on its own, outside any
//! transaction, before the batch's transaction: PostgreSQL commits a
//! statement sent outside a transaction when it completes, as durably as a
//! `COMMIT` (`synchronous_commit`), and one statement is all-or-nothing. That
//! is one round trip for the batch instead of three (`BEGIN`, the
//! statement, `COMMIT`). Its operations are answered at once; the others (a
//! refused verify, or all of them if the statement failed) go on in the
//! batch's transaction, on their own paths. The starts lane, which needs
//! its transaction (the project's lock must be held before the statement
//! takes its snapshot), saves the `BEGIN` instead: see [`Mode::Chained`].
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
use std::time::Duration;

use passgate_store::{StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 128;

/// How long a lane with nothing to write keeps its connection. Between
/// batches, even under load, a lane's queue is often empty for a moment:
/// giving the connection back each time cost two round trips a batch
/// (the lane's settings made and undone).
const IDLE_LANE_GIVES_BACK: Duration = Duration::from_millis(100);

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a batch's jobs share besides the connection: the projects whose
/// row the batch's transaction has locked already, so a start of the same
/// project does not ask again (a round trip per start), and the batch's
/// starts, delivery outcomes and link verifies, registered before any job
/// runs: the first start of a project writes the others with it in one
/// statement, and the lanes' statements ahead of the transaction write the
/// outcomes and the verifies.
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
    /// The projects whose starts a statement already covered.
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
    /// Takes the job's outcome from what its lane's statement ahead of the
    /// transaction wrote, if it wrote the job's; says whether it did.
    fn answer(&mut self, state: &mut BatchState) -> bool;
    /// Runs inside the batch's transaction; says whether it succeeded.
    fn run<'c>(&'c mut self, conn: &'c mut PgConnection, state: &'c mut BatchState) -> BoxFuture<'c, bool>;
    fn fail(&mut self, error: StoreError);
    /// Sends the outcome, or the commit's error if the commit failed.
    fn deliver(self: Box<Self>, committed: StoreResult<()>);
}

/// What a job tells its batch before the batch runs (see [`BatchState`]).
pub(crate) type Register = Box<dyn Fn(&mut BatchState) + Send>;

/// How a job finds its outcome in what its lane's statement ahead of the
/// transaction wrote (see [`BatchState`]); `None` if that statement did
/// not write it.
pub(crate) type Answer<R> = Box<dyn Fn(&mut BatchState) -> Option<R> + Send>;

/// A lane's statement ahead of its batches' transactions (see the module's
/// documentation): writes what it can of the registered operations, in one
/// statement outside any transaction, and leaves their answers in the
/// batch's state. An error means it wrote nothing.
pub(crate) type Ahead = for<'c> fn(&'c mut PgConnection, &'c mut BatchState) -> BoxFuture<'c, StoreResult<()>>;

/// The statements ahead of the transaction of the lanes that have one.
pub(crate) struct Aheads {
    pub(crate) verifies: Ahead,
    pub(crate) deliveries: Ahead,
}

struct Pending<R, F> {
    register: Option<Register>,
    answer: Option<Answer<R>>,
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

    fn answer(&mut self, state: &mut BatchState) -> bool {
        let Some(answer) = self.answer.as_ref().and_then(|answer| answer(state)) else { return false };
        self.outcome = Some(Ok(answer));
        true
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

/// The plan settings of a lane's session, made when a lane takes a
/// connection from the pool and undone ([`LANE_SETTINGS_RESET`]) before it
/// gives it back, so that other queries never run with them. The lanes'
/// batch statements (`store::start_together`, `store::VERIFY_TOGETHER`,
/// `store::RECORD_TOGETHER`) are big; planned on every execution (~0.25 ms
/// each), the verify batch alone took over a tenth of PostgreSQL's CPU at
/// 2,000 logins/s, and PostgreSQL may choose to do so for any statement
/// whose custom plans look cheaper (they see how many rows the arrays
/// hold). The lanes use cached generic plans instead, made with no
/// sequential scan, hash or merge join, so that a plan first made while
/// `logins` was small (item 8 of bench/NOTES.md) cannot scan the grown
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

/// Verifies get several lanes: unlike starts, which queue on their
/// project's row lock anyway, they only wait on round trips. Two of them can
/// deadlock only when the same logins are verified twice at once in crossed
/// order (a replay); PostgreSQL then fails one of the two batches, whose
/// operations run again one by one after the other batch committed.
///
/// Two, not more: each lane's batches cost a commit, a WAL flush and an
/// executor start-up whatever their size, and more lanes make smaller
/// batches. At 64 users on 2 cores, four lanes averaged 2.6 verifies a
/// transaction and one lane left the machine idle between round trips; two
/// ran ~20% more logins/s than four (bench/NOTES.md, item 13).
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
    pub(crate) fn spawn(pool: &PgPool, aheads: Aheads) -> Self {
        let lanes = (0..FIRST_VERIFY_LANE + VERIFY_LANES)
            .map(|index| {
                let mode = match index {
                    STARTS_LANE => Mode::Chained,
                    DELIVERIES_LANE => Mode::Ahead(aheads.deliveries),
                    _ => Mode::Ahead(aheads.verifies),
                };
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), receiver, mode));
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
    /// runs first, before any job of the batch (and again before a re-run);
    /// `answer`, if any, then looks for the job's outcome in what the lane's
    /// statement ahead of the transaction wrote, and if it finds it, `write`
    /// does not run.
    pub(crate) async fn write<R, F>(
        &self,
        lane: Lane,
        register: Option<Register>,
        answer: Option<Answer<R>>,
        write: F,
    ) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection, &'c mut BatchState) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: BoxedJob = Box::new(Pending { register, answer, write, outcome: None, reply });
        self.lane(lane).send(Message::Write(job)).map_err(|_| closed())?;
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

/// How a lane saves round trips (see the module's documentation).
#[derive(Clone, Copy)]
enum Mode {
    /// Its batches' transactions follow one another with no `BEGIN` between
    /// them: while more jobs wait, a batch commits with `COMMIT AND CHAIN`,
    /// which begins the next transaction in the same round trip. For the
    /// starts lane, whose batches run one after another on the critical
    /// path of every login (each holds its project's row lock until its
    /// commit), a `BEGIN` was a sixth of a batch's time at 64 users. A lane
    /// with nothing waiting commits plainly, so it is never left idle inside
    /// a transaction.
    Chained,
    /// A statement ahead of the transaction writes what it can of a batch.
    Ahead(Ahead),
}

/// A lane's connection, and whether a transaction is open on it (begun by
/// the last batch's `COMMIT AND CHAIN`).
struct Held {
    conn: PoolConnection<Postgres>,
    in_transaction: bool,
}

async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Message>, mode: Mode) {
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
        let chain = matches!(mode, Mode::Chained) && closing.is_none() && !receiver.is_empty();
        commit_batch(&pool, &mut held, batch, mode, chain).await;
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

fn fail_all(batch: Vec<BoxedJob>, message: &str) {
    for mut job in batch {
        job.fail(StoreError::Database(message.to_string().into()));
        job.deliver(Ok(()));
    }
}

/// Runs a batch on the lane's connection, taking one first if needed;
/// `chain` says whether its commit begins the next transaction.
async fn commit_batch(pool: &PgPool, held: &mut Option<Held>, batch: Vec<BoxedJob>, mode: Mode, chain: bool) {
    if batch.is_empty() {
        return;
    }
    if held.is_none() {
        match take_from(pool).await {
            Ok(lane_conn) => *held = Some(lane_conn),
            Err(e) => return fail_all(batch, &e.to_string()),
        }
    }
    let Some(lane_conn) = held.as_mut() else { return };
    let batch = match mode {
        Mode::Ahead(ahead) => write_ahead(&mut lane_conn.conn, batch, ahead).await,
        Mode::Chained => batch,
    };
    if !batch.is_empty() && !run_batch(lane_conn, batch, chain).await {
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
async fn write_ahead(conn: &mut PgConnection, batch: Vec<BoxedJob>, ahead: Ahead) -> Vec<BoxedJob> {
    let mut state = BatchState::default();
    for job in &batch {
        job.register(&mut state);
    }
    if let Err(e) = ahead(conn, &mut state).await {
        tracing::debug!(error = %e, "a lane's statement ahead of its transaction failed; its jobs run one by one");
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
async fn run_batch(lane_conn: &mut Held, mut batch: Vec<BoxedJob>, chain: bool) -> bool {
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
        match run_alone(lane_conn, job.as_mut()).await {
            Ok(()) => job.deliver(Ok(())),
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

async fn run_together(lane_conn: &mut Held, batch: &mut [BoxedJob], chain: bool) -> Together {
    if let Err(e) = begin(lane_conn).await {
        return Together::Broken(e.to_string());
    }
    let mut state = BatchState::default();
    for job in batch.iter() {
        job.register(&mut state);
    }
    for job in batch.iter_mut() {
        if !job.run(&mut lane_conn.conn, &mut state).await {
            return match end(lane_conn, "ROLLBACK").await {
                Ok(()) => Together::JobFailed,
                Err(e) => Together::Broken(e.to_string()),
            };
        }
    }
    match end(lane_conn, if chain { "COMMIT AND CHAIN" } else { "COMMIT" }).await {
        Ok(()) => Together::Committed,
        Err(e) => {
            tracing::error!(error = %e, "cannot commit a write batch");
            Together::CommitFailed(e.to_string())
        }
    }
}

/// Runs one job in a transaction of its own: `Ok` once it committed, or was
/// rolled back after failing (it keeps its own error); `Err` when beginning
/// or ending the transaction failed.
async fn run_alone(lane_conn: &mut Held, job: &mut dyn Job) -> Result<(), String> {
    begin(lane_conn).await.map_err(|e| e.to_string())?;
    let mut state = BatchState::default();
    job.register(&mut state);
    if job.run(&mut lane_conn.conn, &mut state).await {
        // A failed commit fails the job and, like any failed end, discards
        // the connection, whose state is then unknown.
        end(lane_conn, "COMMIT").await.map_err(|e| e.to_string())
    } else {
        end(lane_conn, "ROLLBACK").await.map_err(|e| e.to_string())
    }
}
