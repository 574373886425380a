//! Schema migrations: the SQL files of `migrations/`, compiled in, applied
//! in order, each in its own transaction with its version recorded.

use passgate_store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension};

use crate::db_err;

/// (version, name, SQL), in order. A migration, once released, never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "project_send_counts", include_str!("../migrations/0002_project_send_counts.sql")),
    (3, "clustered_tables", include_str!("../migrations/0003_clustered_tables.sql")),
    (4, "key_generation", include_str!("../migrations/0004_key_generation.sql")),
    (5, "login_ip_network", include_str!("../migrations/0005_login_ip_network.sql")),
    (6, "code_budgets", include_str!("../migrations/0006_code_budgets.sql")),
    (7, "invites_organizations", include_str!("../migrations/0007_invites_organizations.sql")),
    (8, "otp_sessions", include_str!("../migrations/0008_otp_sessions.sql")),
    (9, "webhooks", include_str!("../migrations/0009_webhooks.sql")),
    (10, "project_limits", include_str!("../migrations/0010_project_limits.sql")),
    (11, "retention", include_str!("../migrations/0011_retention.sql")),
    (12, "deliveries_queued_by_the_store", include_str!("../migrations/0012_deliveries_queued_by_the_store.sql")),
];

/// Applies the migrations this database lacks. Refuses a database migrated
/// by a newer passgate rather than run against a schema it does not know.
pub(crate) fn run(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT",
    )
    .map_err(db_err)?;
    adopt_sqlx_history(conn)?;
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0)).map_err(db_err)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(newest) = newest.filter(|v| *v > known) {
        return Err(StoreError::database_message(format!(
            "the database is at schema version {newest}, newer than this passgate knows ({known}); upgrade passgate"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if newest.is_some_and(|v| v >= *version) {
            continue;
        }
        // IMMEDIATE: a second process migrating the same file waits, then
        // sees the version recorded and skips it.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        let applied = (|| {
            let done: Option<i64> = conn
                .query_row("SELECT version FROM schema_migrations WHERE version = ?", [version], |r| r.get(0))
                .optional()?;
            if done.is_none() {
                conn.execute_batch(sql)?;
                // Bookkeeping only, so SQLite's clock is fine here.
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)
                     VALUES (?, ?, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
                    rusqlite::params![version, name],
                )?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::database(MigrationFailed { version: *version, name, source: e }));
        }
    }
    Ok(())
}

/// Whether every migration this passgate knows has been applied.
pub(crate) fn check_current(conn: &Connection) -> StoreResult<()> {
    let newest: Option<i64> = conn
        .prepare_cached("SELECT MAX(version) FROM schema_migrations")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if newest.unwrap_or(0) < known {
        return Err(StoreError::database_message(format!("the database is not migrated to version {known}")));
    }
    Ok(())
}

/// Databases created before passgate ran its own migrations recorded them
/// in sqlx's `_sqlx_migrations` table; carry those versions over once.
fn adopt_sqlx_history(conn: &Connection) -> StoreResult<()> {
    let has_sqlx: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if has_sqlx {
        conn.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at)
             SELECT version, description, CAST(strftime('%s', installed_on) AS INTEGER) * 1000
             FROM _sqlx_migrations WHERE success",
            [],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_order_and_unique() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "migration {} is out of order", pair[1].0);
        }
    }

    #[test]
    fn migrating_twice_applies_each_once_and_a_newer_schema_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        run(&conn)?;
        run(&conn)?;
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))?;
        assert_eq!(usize::try_from(count)?, MIGRATIONS.len());
        conn.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 0)", [])?;
        let refused = run(&conn).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("9999"), "{refused}");
        Ok(())
    }

    #[test]
    fn rows_survive_the_move_to_clustered_tables() -> Result<(), Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
            applied_at INTEGER NOT NULL) STRICT; INSERT INTO schema_migrations VALUES (1, 'init', 0), (2, 'counts', 0);")?;
        conn.execute_batch(MIGRATIONS[0].2)?;
        conn.execute_batch(MIGRATIONS[1].2)?;
        conn.execute_batch(
            "INSERT INTO projects VALUES ('prj_1', 'p', NULL, '[]', '[]', '[]', 900, 10, 0, 1);
             INSERT INTO logins (id, project_id, email, token_hash, validation_url, created_at, expires_at)
                VALUES ('lgn_1', 'prj_1', 'a@example.com', x'01', 'https://a.example/cb', 1, 2);
             INSERT INTO events (id, project_id, kind, created_at) VALUES ('evt_1', 'prj_1', 'auth.started', 1);",
        )?;
        run(&conn)?;
        let email: String = conn.query_row("SELECT email FROM logins WHERE token_hash = x'01'", [], |r| r.get(0))?;
        assert_eq!(email, "a@example.com");
        let events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        assert_eq!(events, 1);
        let clustered: i64 =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_list WHERE wr = 1 AND name IN ('logins', 'outbox', 'users', 'events', 'project_send_counts', 'idempotency_keys')", [], |r| r.get(0))?;
        assert_eq!(clustered, 6);
        Ok(())
    }

    #[test]
    fn history_recorded_by_sqlx_is_adopted() -> Result<(), Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
                checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                VALUES (1, 'init', TRUE, x'00', 0);",
        )?;
        // The schema of version 1 exists already: applying it again would fail.
        conn.execute_batch(MIGRATIONS[0].2)?;
        run(&conn)?;
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
        Ok(())
    }
}

/// A migration that could not be applied, with the driver's error as its cause.
#[derive(Debug, thiserror::Error)]
#[error("migration {version} ({name}) failed")]
struct MigrationFailed {
    version: i64,
    name: &'static str,
    #[source]
    source: rusqlite::Error,
}
