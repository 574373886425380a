//! Group commit for the hot path: one task per instance runs the writes of
//! logins (start, verify, delivery outcome) that arrive together in one
//! transaction on one connection, each job in its own `SAVEPOINT`.
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

use passgate_store::{StoreError, StoreResult};
use sqlx::{Executor, PgConnection, PgPool};
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

/// The sending side, held by every clone of the store.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    sender: mpsc::UnboundedSender<Message>,
}

impl Writer {
    pub(crate) fn spawn(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, receiver));
        Self { sender }
    }

    /// Runs `f` inside the next batch's transaction; returns once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
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
        self.sender.send(Message::Write(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Finishes the jobs already sent; later writes fail.
    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Message>) {
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
        commit_batch(&pool, batch).await;
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

async fn commit_batch(pool: &PgPool, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let message = e.to_string();
            for job in batch {
                let (_, deliver) = job(Err(StoreError::Database(message.clone().into()))).await;
                deliver(Ok(()));
            }
            return;
        }
    };
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch {
        let deliver = match (&mut *tx).execute("SAVEPOINT job").await {
            Ok(_) => {
                let (ok, deliver) = job(Ok(&mut *tx)).await;
                // A job that failed half-way leaves nothing behind; the others keep theirs.
                if !ok {
                    let _ = (&mut *tx).execute("ROLLBACK TO SAVEPOINT job").await;
                }
                let _ = (&mut *tx).execute("RELEASE SAVEPOINT job").await;
                deliver
            }
            Err(e) => job(Err(db_err(e))).await.1,
        };
        deliveries.push(deliver);
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
}
