//! Fresh databases for tests.

use passgate_core::IdKind;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend under test: `PASSGATE_TEST_BACKEND=postgres`, or SQLite.
    pub fn from_env() -> Self {
        match std::env::var("PASSGATE_TEST_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("PASSGATE_TEST_BACKEND={other}: use sqlite or postgres"),
        }
    }
}

/// The PostgreSQL server tests may create databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("PASSGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database for one test, removed (file or database) when dropped.
#[derive(Debug)]
pub struct TempDatabase {
    pub url: String,
    pub backend: Backend,
    /// The SQLite file's path, or the PostgreSQL database's name.
    name: String,
}

impl TempDatabase {
    /// A fresh database on the backend under test ([`Backend::from_env`]).
    pub async fn new() -> Self {
        Self::on(Backend::from_env()).await
    }

    /// A fresh database on `backend`. A PostgreSQL one exists when this
    /// returns; a SQLite file is created by the first connection.
    pub async fn on(backend: Backend) -> Self {
        let unique = IdKind::Request.generate().trim_start_matches("req_").to_string();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("passgate-test-{unique}.db"));
                Self { url: format!("sqlite://{}", path.display()), backend, name: path.display().to_string() }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("passgate_test_{unique}");
                let admin = postgres_admin_url();
                let mut conn =
                    sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let base = match admin.rsplit_once('/') {
                    Some((base, _)) => base.to_string(),
                    None => panic!("PASSGATE_TEST_POSTGRES_URL needs a database path"),
                };
                Self { url: format!("{base}/{name}"), backend, name }
            }
        }
    }

    /// A fresh SQLite file.
    pub async fn sqlite() -> Self {
        Self::on(Backend::Sqlite).await
    }

    /// A fresh PostgreSQL database.
    pub async fn postgres() -> Self {
        Self::on(Backend::Postgres).await
    }

    /// The SQLite file's path (SQLite only).
    pub fn path(&self) -> std::path::PathBuf {
        assert_eq!(self.backend, Backend::Sqlite, "only a SQLite database is a file");
        std::path::PathBuf::from(&self.name)
    }

    /// Everything the database holds, as text (for "no secret at rest" checks).
    pub fn dump(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    if let Ok(b) = std::fs::read(format!("{}{suffix}", self.name)) {
                        bytes.extend(b);
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Backend::Postgres => {
                let out = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--inserts", &self.url])
                    .output()
                    .unwrap_or_else(|e| panic!("pg_dump: {e}"));
                assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }
}

impl TempDatabase {
    /// Every row of every table, as text: what a backup, an export or a
    /// replica holds (SQLite: read through SQLite; PostgreSQL: `pg_dump`).
    /// Unlike [`dump`](Self::dump), it leaves out bytes of deleted rows that
    /// a database file may keep in free pages until they are reused.
    pub fn logical_dump(&self) -> String {
        match self.backend {
            Backend::Postgres => self.dump(),
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(&self.name).unwrap_or_else(|e| panic!("{e}"));
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut out = String::new();
                for table in tables {
                    let mut statement =
                        conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap_or_else(|e| panic!("{e}"));
                    let columns = statement.column_count();
                    let mut rows = statement.query([]).unwrap_or_else(|e| panic!("{e}"));
                    while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{e}")) {
                        out.push_str(&table);
                        for i in 0..columns {
                            use rusqlite::types::ValueRef;
                            let value = match row.get_ref(i).unwrap_or_else(|e| panic!("{e}")) {
                                ValueRef::Null => "NULL".to_string(),
                                ValueRef::Integer(n) => n.to_string(),
                                ValueRef::Real(x) => x.to_string(),
                                ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
                            };
                            out.push('|');
                            out.push_str(&value);
                        }
                        out.push('\n');
                    }
                }
                out
            }
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Backend::Postgres => {
                let name = self.name.clone();
                // A runtime of its own on its own thread: drop may run inside
                // a test's runtime, which must not be blocked on.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(&drop).execute(&mut conn).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
