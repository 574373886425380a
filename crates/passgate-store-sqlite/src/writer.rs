//! Group commit: one thread owns SQLite's single write connection and runs
//! every write of the store, batching whatever arrived together into one
//! transaction — one `fsync` for many logins instead of one each.
//!
//! A batch first runs its jobs one after another with nothing in between.
//! Should one of them fail, the whole transaction is rolled back and the
//! batch runs again, each job inside its own `SAVEPOINT`, so that the
//! failed job leaves nothing behind and the others keep their writes. (A
//! savepoint around every job, always, cost two statements and a copy of
//! each page the job touched into the savepoint's journal, for a rollback
//! that almost never happens.) Jobs are therefore `Fn`: a job may run
//! twice, and only its last run counts.
//!
//! A job's result is handed back only after the batch's `COMMIT` returned:
//! nothing is reported done before it is on disk (`synchronous=FULL`). Jobs
//! of a batch run one after another on one connection, so every guarantee of
//! "one transaction per method" holds: a second verify in the same batch sees
//! the first one's `used_at` and its conditional `UPDATE` matches nothing.
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

/// One write waiting in the writer: it can run (again) and, once the
/// batch's fate is known, answer its caller.
trait Job: Send {
    /// Runs the operation on the open transaction, replacing the outcome of
    /// an earlier run; returns whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;

    /// Records that the job could not run: its outcome is `error`.
    fn fail(&mut self, error: StoreError);

    /// Answers the caller: the last run's outcome if `batch` is `Ok` (the
    /// transaction committed), else `batch`'s error.
    fn answer(self: Box<Self>, batch: StoreResult<()>);
}

struct PendingWrite<F, R> {
    operation: F,
    outcome: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Job for PendingWrite<F, R>
where
    R: Send + 'static,
    F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        // A panicking job must not take the writer (and every later write) down.
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.operation)(conn)))
            .unwrap_or_else(|_| Err(StoreError::database_message("a write operation panicked")));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn answer(self: Box<Self>, batch: StoreResult<()>) {
        let outcome = match batch {
            Ok(()) => self.outcome.unwrap_or_else(|| Err(StoreError::database_message("a write was never run"))),
            Err(e) => Err(e),
        };
        let _ = self.reply.send(outcome);
    }
}

enum Message {
    /// Runs inside the batch transaction.
    Write(Box<dyn Job>),
    /// Runs alone, outside any transaction (migrations manage their own).
    Alone(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

fn closed() -> StoreError {
    StoreError::database_message("the SQLite writer is closed")
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
            .map_err(StoreError::database)?;
        wait_open.await.map_err(|_| closed())??;
        Ok(Self { sender })
    }

    fn wrap<R, F>(operation: F) -> (Box<dyn Job>, oneshot::Receiver<StoreResult<R>>)
    where
        R: Send + 'static,
        F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        (Box::new(PendingWrite { operation, outcome: None, reply }), answer)
    }

    /// Runs `f` inside the next batch's transaction; returns once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (job, answer) = Self::wrap(f);
        self.sender.send(Message::Write(job)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `f` alone on the write connection, outside any transaction.
    pub(crate) async fn alone<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
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
                Message::Alone(mut job) => {
                    // Whatever was batched before it commits first.
                    commit_batch(&conn, std::mem::take(&mut batch));
                    job.run(&conn);
                    job.answer(Ok(()));
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

fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) {
    if batch.is_empty() {
        return;
    }
    // IMMEDIATE takes the write lock up front, so another process on the
    // same file (the CLI) waits on busy_timeout instead of deadlocking.
    let begin = || execute(conn, "BEGIN IMMEDIATE").map_err(db_err);
    let committed = begin()
        .and_then(|()| {
            if batch.iter_mut().all(|job| job.run(conn)) {
                return Ok(());
            }
            // Rare: start over, each job in a savepoint of its own.
            execute(conn, "ROLLBACK").map_err(db_err)?;
            begin()?;
            batch.iter_mut().for_each(|job| run_in_savepoint(conn, job));
            Ok(())
        })
        .and_then(|()| execute(conn, "COMMIT").map_err(db_err));
    if let Err(e) = &committed {
        tracing::error!(error = %e, jobs = batch.len(), "cannot commit a write transaction");
        let _ = execute(conn, "ROLLBACK");
    }
    // Every job of a failed batch gets the batch's error itself (shared,
    // not copied into a string), so its cause chain reaches the logs.
    for job in batch {
        job.answer(committed.clone());
    }
}

/// Runs a job inside a savepoint, undoing whatever it did if it failed.
fn run_in_savepoint(conn: &Connection, job: &mut Box<dyn Job>) {
    if let Err(e) = execute(conn, "SAVEPOINT job") {
        job.fail(db_err(e));
        return;
    }
    if !job.run(conn) {
        let _ = execute(conn, "ROLLBACK TO job");
    }
    let _ = execute(conn, "RELEASE job");
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    /// A database file in the temporary directory, removed when dropped.
    struct TempDatabase(PathBuf);

    impl TempDatabase {
        fn new() -> Self {
            let name = format!("passgate-writer-{}.db", passgate_core::ids::IdKind::Request.generate());
            Self(std::env::temp_dir().join(name))
        }

        fn values(&self) -> Vec<i64> {
            let conn = open(&self.0, true).unwrap_or_else(|e| panic!("{e}"));
            let mut statement = conn.prepare("SELECT x FROM t ORDER BY x").unwrap_or_else(|e| panic!("{e}"));
            let rows = statement.query_map([], |row| row.get(0)).unwrap_or_else(|e| panic!("{e}"));
            rows.collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"))
        }
    }

    impl Drop for TempDatabase {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    async fn writer_with_table(database: &TempDatabase, table: &'static str) -> Writer {
        let writer = Writer::spawn(&database.0).await.unwrap_or_else(|e| panic!("{e}"));
        writer.alone(move |conn| conn.execute_batch(table).map_err(db_err)).await.unwrap_or_else(|e| panic!("{e}"));
        writer
    }

    /// Sends the writes while the writer is kept busy for a moment, so that
    /// they all land in one batch; returns their answers, in order.
    async fn in_one_batch<R, F>(writer: &Writer, operations: Vec<F>) -> Vec<StoreResult<R>>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let holder = writer.clone();
        let held = tokio::spawn(async move {
            holder
                .alone(|_| {
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let writes: Vec<_> = operations
            .into_iter()
            .map(|operation| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(operation).await })
            })
            .collect();
        held.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        let mut answers = Vec::new();
        for write in writes {
            answers.push(write.await.unwrap_or_else(|e| panic!("{e}")));
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_leaves_nothing_behind_and_the_rest_of_its_batch_commits() {
        let database = TempDatabase::new();
        let writer = writer_with_table(&database, "CREATE TABLE t (x INTEGER NOT NULL)").await;
        let jobs = (0..30_i64)
            .map(|x| {
                move |conn: &Connection| {
                    // Every job writes; some then fail, one panics.
                    conn.execute("INSERT INTO t (x) VALUES (?)", [x]).map_err(db_err)?;
                    match x % 3 {
                        1 => Err(StoreError::Conflict(format!("{x} refused"))),
                        2 if x == 5 => panic!("job {x} panics"),
                        _ => Ok(x * 10),
                    }
                }
            })
            .collect();
        let answers = in_one_batch(&writer, jobs).await;

        for (x, result) in (0..30_i64).zip(answers) {
            match x % 3 {
                1 => assert!(
                    matches!(&result, Err(StoreError::Conflict(m)) if *m == format!("{x} refused")),
                    "{result:?}"
                ),
                2 if x == 5 => assert!(matches!(&result, Err(StoreError::Database(_))), "{result:?}"),
                _ => assert_eq!(result.ok(), Some(x * 10)),
            }
        }
        let kept: Vec<i64> = (0..30).filter(|x| x % 3 != 1 && *x != 5).collect();
        assert_eq!(database.values(), kept);
        writer.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_a_batch_see_each_others_writes() {
        let database = TempDatabase::new();
        let writer = writer_with_table(&database, "CREATE TABLE t (x INTEGER NOT NULL UNIQUE)").await;

        // Ten jobs of one batch each claim the value 1 if nobody has: one
        // succeeds, whichever ran first, and the rest see its row.
        let claim =
            |conn: &Connection| conn.execute("INSERT INTO t (x) VALUES (1) ON CONFLICT DO NOTHING", []).map_err(db_err);
        let answers = in_one_batch(&writer, vec![claim; 10]).await;
        let claims: usize = answers.into_iter().map(|a| a.unwrap_or_else(|e| panic!("{e}"))).sum();
        assert_eq!(claims, 1);
        assert_eq!(database.values(), vec![1]);
        writer.close().await;
    }
}
