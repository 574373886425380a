//! Read-only connections, used on the caller's thread.
//!
//! A read here is a point lookup or a short index range scan (an API key by
//! hash, a login by id, a page of events): a few microseconds. Handing it to
//! a blocking thread pool would cost more than running it, so it runs where
//! it is asked, on a connection taken from a small idle list. In WAL mode a
//! reader never waits for the writer, so this does not stall the runtime
//! behind a commit.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use passgate_store::{StoreError, StoreResult};
use rusqlite::Connection;

use crate::{db_err, open};

/// Idle connections kept for reuse; more are opened under a burst and
/// closed after it.
const MAX_IDLE: usize = 8;

#[derive(Debug)]
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while holding the lock leaves a valid Vec behind.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::database_message("the SQLite store is closed"));
        }
        let taken = self.idle().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => open(&self.path, true).map_err(db_err)?,
        };
        let result = f(&conn);
        if !self.closed.load(Ordering::Acquire) {
            let mut idle = self.idle();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    /// Closes the idle connections; later reads fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle().clear();
    }
}
