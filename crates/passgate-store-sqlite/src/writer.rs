//! Group commit: one task owns SQLite's single write connection and runs
//! every write of the store, batching whatever arrived together into one
//! transaction — one `fsync` for many logins instead of one each.
//!
//! Each job runs inside its own `SAVEPOINT`, so a job that fails is rolled
//! back alone and the rest of the batch commits. A job's result is handed
//! back only after the batch's `COMMIT` returned: nothing is reported done
//! before it is on disk (`synchronous=FULL`). Jobs of a batch run one after
//! another on one connection, so every guarantee of "one transaction per
//! method" holds: a second verify in the same batch sees the first one's
//! `used_at` and its conditional `UPDATE` matches nothing.

use std::future::Future;
use std::pin::Pin;

use passgate_store::{StoreError, StoreResult};
use sqlx::{Connection, Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::db_err;

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 256;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job: runs on the connection and returns whether it succeeded and what
/// to do once the batch's fate is known (deliver its result, or the
/// commit's error).
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;
type Deliver = Box<dyn FnOnce(StoreResult<()>) + Send>;

pub(crate) enum Message {
    /// Runs inside the batch transaction.
    Write(Job),
    /// Runs alone, outside any transaction (migrations manage their own).
    Alone(Job),
    Close(oneshot::Sender<()>),
}

fn closed() -> StoreError {
    StoreError::Database("the SQLite writer is closed or could not start a transaction".into())
}

/// The sending side, held by every clone of the store.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    sender: mpsc::UnboundedSender<Message>,
}

impl Writer {
    pub(crate) fn spawn(connection: SqliteConnection) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, receiver));
        Self { sender }
    }

    fn wrap<R, F>(f: F) -> (Job, oneshot::Receiver<StoreResult<R>>)
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = f(conn).await;
                let ok = outcome.is_ok();
                let deliver: Deliver = Box::new(move |committed: StoreResult<()>| {
                    let _ = reply.send(committed.and(outcome));
                });
                (ok, deliver)
            })
        });
        (job, answer)
    }

    /// Runs `f` inside the next batch's transaction; returns once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (job, answer) = Self::wrap(f);
        self.sender.send(Message::Write(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `f` alone on the write connection, outside any transaction.
    pub(crate) async fn alone<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
    {
        let (job, answer) = Self::wrap(f);
        self.sender.send(Message::Alone(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Finishes the jobs already sent, then closes the connection.
    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(mut conn: SqliteConnection, mut receiver: mpsc::UnboundedReceiver<Message>) {
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = receiver.recv().await else { break };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => batch.push(job),
                Message::Alone(job) => {
                    // Whatever was batched before it commits first.
                    commit_batch(&mut conn, std::mem::take(&mut batch)).await;
                    let (_, deliver) = job(&mut conn).await;
                    deliver(Ok(()));
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
        commit_batch(&mut conn, batch).await;
    }
    let _ = conn.close().await;
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

async fn commit_batch(conn: &mut SqliteConnection, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    // IMMEDIATE takes the write lock up front, so another process on the
    // same file (the CLI) waits on busy_timeout instead of deadlocking.
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        // Never run a job outside a transaction: dropping them fails their callers.
        tracing::error!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
        return;
    }
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = conn.execute("SAVEPOINT job").await {
            tracing::error!(error = %e, "cannot open a savepoint");
        }
        let (ok, deliver) = job(&mut *conn).await;
        // A job that failed half-way leaves nothing behind; the others keep theirs.
        if !ok {
            let _ = conn.execute("ROLLBACK TO job").await;
        }
        let _ = conn.execute("RELEASE job").await;
        deliveries.push(deliver);
    }
    let committed = conn.execute("COMMIT").await.map(|_| ()).map_err(db_err);
    if committed.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    for deliver in deliveries {
        let result = match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Database(e.to_string().into())),
        };
        deliver(result);
    }
}
