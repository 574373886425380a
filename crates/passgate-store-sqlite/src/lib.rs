//! The embedded SQLite implementation of [`Store`](passgate_store::Store):
//! one file per area, named as in `passgate-store` (`logins.rs` holds
//! `impl Logins for SqliteStore`), plus the writer, the readers, the key
//! cache and the migrations.
//!
//! One file, WAL mode, `synchronous=FULL`: a start that returned 202 has its
//! login and email on disk. Every write goes to one writer thread that owns
//! the single write connection and commits concurrent operations together
//! (group commit, see [`writer`]); reads use a small pool of read-only
//! connections (see [`reader`]). Transactions start with `BEGIN IMMEDIATE`
//! so a second process on the same file (the CLI beside a running server)
//! waits for the write lock instead of failing.
//!
//! The store talks to SQLite's C API directly (rusqlite) rather than through
//! an async driver: a statement costs a few microseconds, and an async
//! driver's hand-off to its worker thread per statement cost more than the
//! statement itself — on the single writer, that hand-off was the ceiling of
//! the whole server (see BENCHMARKS.md).

mod database;
mod events;
mod invites;
mod key_cache;
mod logins;
mod migrate;
mod organizations;
mod otp;
mod outbox;
mod projects;
mod reader;
mod retention;
mod sessions;
mod signing_keys;
mod stamps;
mod users;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use passgate_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite-backed store. Cheap to clone (the connections are shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: writer::Writer,
    reader: Arc<reader::ReaderPool>,
    keys: Arc<key_cache::KeyCache>,
}

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::database(e)
}

/// Maps the driver's errors into the store's.
pub(crate) trait OrStoreError<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> OrStoreError<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(db_err)
    }
}

/// The file a `sqlite:` URL names: `sqlite://path`, `sqlite:///abs/path` or
/// `sqlite:path`, with any `?query` ignored.
pub fn database_path(url: &str) -> StoreResult<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::database_message(format!("{url:?} is not a sqlite: URL")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::database_message(format!("{url:?} names no database file")));
    }
    Ok(PathBuf::from(path))
}

/// Creates the database file, if it does not exist yet, readable and
/// writable by its owner only (0600): it holds keyed hashes, sealed
/// secrets and every user's address. SQLite gives the `-wal` and `-shm`
/// files it creates beside it the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens one connection with passgate's settings.
pub(crate) fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        // The journal mode is a property of the file; readers inherit it.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A batch that must run again job by job puts each job in a
        // savepoint, and a statement that may fail half-way keeps a statement
        // journal; both would otherwise spill to temporary files (when every
        // job had a savepoint, two thirds of the writer's writes went there).
        // They only ever serve a rollback inside the open transaction (a
        // crash discards the whole uncommitted batch from the WAL anyway), so
        // memory is the right place for them.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The hot pages of a busy server (the right edge of every table,
        // the recent logins) stay cached between batches.
        conn.pragma_update(None, "cache_size", -16384)?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`
    /// (`sqlite://path/to/file.db`, `sqlite:file.db`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let path = database_path(url)?;
        create_private(&path).map_err(StoreError::database)?;
        let writer = writer::Writer::spawn(&path).await?;
        let reader = Arc::new(reader::ReaderPool::new(path));
        Ok(Self { writer, reader, keys: Arc::default() })
    }

    /// Finishes the writes already queued, then closes the connections.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close();
    }

    /// Runs `f` in the writer's next batch transaction; returns once committed.
    /// `f` may run twice (see [`writer`]); only its last run counts.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` on a read-only connection.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        self.reader.read(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database and its WAL are the owner's alone.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_files_are_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("passgate-mode-{}.db", passgate_core::IdKind::Request.generate()));
        let store =
            SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .write(|conn| conn.execute_batch("CREATE TABLE t (x INTEGER)").map_err(db_err))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for suffix in ["", "-wal"] {
            let file = format!("{}{suffix}", path.display());
            let mode =
                std::fs::metadata(&file).map(|m| m.permissions().mode()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
        }
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn urls_name_their_file() {
        let path = |url| database_path(url).ok();
        assert_eq!(path("sqlite://data/p.db"), Some(PathBuf::from("data/p.db")));
        assert_eq!(path("sqlite:///var/lib/p.db"), Some(PathBuf::from("/var/lib/p.db")));
        assert_eq!(path("sqlite:p.db?mode=rwc"), Some(PathBuf::from("p.db")));
        assert_eq!(path("sqlite://"), None);
        assert_eq!(path("postgres://x/y"), None);
    }
}
