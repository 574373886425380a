//! Group commit for the hot path: the writes of logins that arrive together
//! run in one transaction on one connection, each job in its own
//! `SAVEPOINT`. There are lanes per kind of write — one for starts, one for
//! delivery outcomes, several for verifies — each with its own task and
//! connection, so they proceed side by side (a lane spends most of its time
//! waiting on round trips to the database, not working).
//!
//! Lanes of different kinds never wait on each other's locks: starts lock
//! their project (`FOR NO KEY UPDATE`, which foreign-key checks do not wait
//! for) and insert new rows; verifies lock existing logins and users;
//! outcomes lock outbox rows.
//!
//! Why: every start takes its project's row lock (so limits hold across
//! instances) and holds it through its commit's WAL flush, so starts of one
//! project committed one by one can never go faster than one flush each.
//! Batched, a flush and a lock acquisition serve a whole batch. A job that
//! fails is rolled back to its savepoint alone; a job's result is handed
//! back only after the batch's `COMMIT` returned. Several instances still
//! exclude each other through the same row locks, batch by batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use passgate_store::{StoreError, StoreResult};
// A plain string runs over the simple-query protocol, which takes several
// statements at once.
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use crate::db_err;

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 128;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job: given the batch's connection, runs and returns whether it
/// succeeded and how to deliver its result once the commit's fate is known;
/// given an error (no transaction could begin), reports that instead.
type Job = Box<dyn for<'c> FnOnce(Result<&'c mut PgConnection, StoreError>) -> BoxFuture<'c, (bool, Deliver)> + Send>;
type Deliver = Box<dyn FnOnce(StoreResult<()>) + Send>;

enum Message {
    Write(Job),
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

/// Verifies get several lanes: unlike starts, which queue on their
/// project's row lock anyway, they only wait on round trips. Two of them can
/// deadlock only when the same logins are verified twice at once in crossed
/// order (a replay); PostgreSQL then fails one of the two, and the other
/// goes through.
const VERIFY_LANES: usize = 4;

/// The sending sides, held by every clone of the store.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    /// Starts, deliveries, then the verify lanes.
    lanes: Arc<[mpsc::UnboundedSender<Message>]>,
    next_verify: Arc<AtomicUsize>,
}

impl Writer {
    pub(crate) fn spawn(pool: &PgPool) -> Self {
        let lanes = (0..2 + VERIFY_LANES)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), receiver));
                sender
            })
            .collect();
        Self { lanes, next_verify: Arc::new(AtomicUsize::new(0)) }
    }

    fn lane(&self, lane: Lane) -> &mpsc::UnboundedSender<Message> {
        let index = match lane {
            Lane::Starts => 0,
            Lane::Deliveries => 1,
            Lane::Verifies => 2 + self.next_verify.fetch_add(1, Ordering::Relaxed) % VERIFY_LANES,
        };
        &self.lanes[index]
    }

    /// Runs `f` inside the lane's next batch transaction; returns once committed.
    pub(crate) async fn write<R, F>(&self, lane: Lane, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = match conn {
                    Ok(conn) => f(conn).await,
                    Err(e) => Err(e),
                };
                let ok = outcome.is_ok();
                let deliver: Deliver = Box::new(move |committed: StoreResult<()>| {
                    let _ = reply.send(committed.and(outcome));
                });
                (ok, deliver)
            })
        });
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

async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Message>) {
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
        commit_batch(&pool, &mut held, batch).await;
        if receiver.is_empty() {
            held = None;
        }
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

async fn fail_all(batch: Vec<Job>, message: &str) {
    for job in batch {
        let (_, deliver) = job(Err(StoreError::Database(message.to_string().into()))).await;
        deliver(Ok(()));
    }
}

async fn commit_batch(pool: &PgPool, held: &mut Option<PoolConnection<Postgres>>, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    if held.is_none() {
        match pool.acquire().await {
            Ok(conn) => *held = Some(conn),
            Err(e) => return fail_all(batch, &e.to_string()).await,
        }
    }
    let Some(conn) = held.as_mut() else { return };
    if !run_batch(conn, batch).await {
        // Most likely the connection broke: the next batch takes a fresh one.
        *held = None;
    }
}

/// Runs and commits a batch; says whether the connection still looks usable.
async fn run_batch(conn: &mut PgConnection, batch: Vec<Job>) -> bool {
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            fail_all(batch, &e.to_string()).await;
            return false;
        }
    };
    let mut deliveries = Vec::with_capacity(batch.len());
    // Closing one job's savepoint and opening the next's share a round trip
    // (the simple-query protocol takes several statements at once).
    let mut opening = "SAVEPOINT job";
    for job in batch {
        let deliver = match (&mut *tx).execute(opening).await {
            Ok(_) => {
                let (ok, deliver) = job(Ok(&mut *tx)).await;
                // A job that failed half-way leaves nothing behind; the others keep theirs.
                opening = if ok {
                    "RELEASE SAVEPOINT job; SAVEPOINT job"
                } else {
                    "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job; SAVEPOINT job"
                };
                deliver
            }
            Err(e) => {
                opening = "SAVEPOINT job";
                job(Err(db_err(e))).await.1
            }
        };
        deliveries.push(deliver);
    }
    // The last job's savepoint: rolled back if it failed, else committed with the rest.
    if opening.starts_with("ROLLBACK") {
        let _ = (&mut *tx).execute("ROLLBACK TO SAVEPOINT job").await;
    }
    let committed = tx.commit().await.map_err(db_err);
    if let Err(e) = &committed {
        tracing::error!(error = %e, "cannot commit a write batch");
    }
    for deliver in deliveries {
        let result = match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Database(e.to_string().into())),
        };
        deliver(result);
    }
    committed.is_ok()
}
