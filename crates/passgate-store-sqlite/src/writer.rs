//! Group commit: one thread owns SQLite's single write connection and runs
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
//!
//! The writer is an OS thread, not an async task: its work is nothing but
//! blocking SQLite calls, and while it waits for a commit's `fsync` the
//! next batch gathers in its channel.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;

use passgate_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{db_err, open};

/// At most this many jobs share one transaction.
const MAX_BATCH: usize = 256;

/// A job: given the connection, runs and returns whether it succeeded and
/// what to do once the batch's fate is known (deliver its result, or the
/// commit's error); given none (the transaction could not begin), reports
/// that instead of running.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> (bool, Deliver) + Send>;
type Deliver = Box<dyn FnOnce(StoreResult<()>) + Send>;

enum Message {
    /// Runs inside the batch transaction.
    Write(Job),
    /// Runs alone, outside any transaction (migrations manage their own).
    Alone(Job),
    Close(oneshot::Sender<()>),
}

fn closed() -> StoreError {
    StoreError::Database("the SQLite writer is closed".into())
}

/// The sending side, held by every clone of the store.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    sender: mpsc::Sender<Message>,
}

impl Writer {
    /// Opens the write connection (creating the file) on a new thread.
    pub(crate) async fn spawn(path: &Path) -> StoreResult<Self> {
        let (sender, receiver) = mpsc::channel();
        let (opened, wait_open) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("passgate-sqlite-writer".into())
            .spawn(move || match open(&path, false) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    run(conn, &receiver);
                }
                Err(e) => {
                    let _ = opened.send(Err(db_err(e)));
                }
            })
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        wait_open.await.map_err(|_| closed())??;
        Ok(Self { sender })
    }

    fn wrap<R, F>(f: F) -> (Job, oneshot::Receiver<StoreResult<R>>)
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = conn.and_then(|conn| {
                // A panicking job must not take the writer (and every later write) down.
                catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Database("a write operation panicked".into())))
            });
            let ok = outcome.is_ok();
            let deliver: Deliver = Box::new(move |committed: StoreResult<()>| {
                let _ = reply.send(committed.and(outcome));
            });
            (ok, deliver)
        });
        (job, answer)
    }

    /// Runs `f` inside the next batch's transaction; returns once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (job, answer) = Self::wrap(f);
        self.sender.send(Message::Write(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `f` alone on the write connection, outside any transaction.
    pub(crate) async fn alone<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
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

fn run(conn: Connection, receiver: &mpsc::Receiver<Message>) {
    let mut closing = None;
    let mut batch = Vec::new();
    while closing.is_none() {
        let Ok(first) = receiver.recv() else { break };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => batch.push(job),
                Message::Alone(job) => {
                    // Whatever was batched before it commits first.
                    commit_batch(&conn, std::mem::take(&mut batch));
                    let (_, deliver) = job(Ok(&conn));
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
        commit_batch(&conn, std::mem::take(&mut batch));
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn commit_batch(conn: &Connection, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    // IMMEDIATE takes the write lock up front, so another process on the
    // same file (the CLI) waits on busy_timeout instead of deadlocking.
    if let Err(e) = execute(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
        let message = e.to_string();
        for job in batch {
            let (_, deliver) = job(Err(StoreError::Database(message.clone().into())));
            deliver(Ok(()));
        }
        return;
    }
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch {
        let savepoint = execute(conn, "SAVEPOINT job");
        let (ok, deliver) =
            job(savepoint.as_ref().map(|()| conn).map_err(|e| StoreError::Database(e.to_string().into())));
        // A job that failed half-way leaves nothing behind; the others keep theirs.
        if savepoint.is_ok() {
            if !ok {
                let _ = execute(conn, "ROLLBACK TO job");
            }
            let _ = execute(conn, "RELEASE job");
        }
        deliveries.push(deliver);
    }
    let committed = execute(conn, "COMMIT").map_err(db_err);
    if let Err(e) = &committed {
        tracing::error!(error = %e, "cannot commit a write transaction");
        let _ = execute(conn, "ROLLBACK");
    }
    for deliver in deliveries {
        let result = match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Database(e.to_string().into())),
        };
        deliver(result);
    }
}
